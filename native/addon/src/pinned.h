// Opening pinned bpffs objects, and the binding's free functions (queries, sysinfo).
#pragma once

#include <napi.h>

namespace weir {

Napi::Value OpenPinnedMap(const Napi::CallbackInfo &info);
Napi::Value OpenPinnedProgram(const Napi::CallbackInfo &info);
Napi::Value OpenPinnedLink(const Napi::CallbackInfo &info);
Napi::Value LibbpfVersion(const Napi::CallbackInfo &info);
Napi::Value TcxQueryJs(const Napi::CallbackInfo &info);
Napi::Value TcLegacyQueryJs(const Napi::CallbackInfo &info);
Napi::Value IfNameToIndex(const Napi::CallbackInfo &info);
Napi::Value NumPossibleCpus(const Napi::CallbackInfo &info);

} // namespace weir
