// Per-environment state: the constructors of the wrapper classes, so native code
// can create instances (each environment, e.g. a worker thread, has its own).
#pragma once

#include <napi.h>

namespace weir {

struct AddonData {
	Napi::FunctionReference object;
	Napi::FunctionReference map;
	Napi::FunctionReference program;
	Napi::FunctionReference link;
	Napi::FunctionReference ringbuf;
};

inline AddonData &Data(Napi::Env env)
{
	return *env.GetInstanceData<AddonData>();
}

/// The token a native caller passes to a wrapper constructor; JS callers can't forge it.
template <typename T> inline bool IsNativeInit(const Napi::CallbackInfo &info)
{
	return info.Length() == 1 && info[0].IsExternal();
}

} // namespace weir
