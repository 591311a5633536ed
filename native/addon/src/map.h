// NativeMap: one BPF map fd (owned) and its metadata; synchronous map operations.
#pragma once

#include "util.h"

#include <napi.h>

#include <cstdint>
#include <string>

namespace weir {

class Map : public Napi::ObjectWrap<Map> {
public:
	static Napi::Function Define(Napi::Env env);
	/// Wraps fd (taken over). name: the object's map name, or "" to use the kernel's.
	static Napi::Object New(Napi::Env env, Fd fd, const std::string &name);

	explicit Map(const Napi::CallbackInfo &info);

	int fd() const { return fd_.get(); }
	uint32_t type() const { return type_; }
	const std::string &name() const { return name_; }

private:
	Napi::Value GetFd(const Napi::CallbackInfo &info);
	Napi::Value Lookup(const Napi::CallbackInfo &info);
	Napi::Value Update(const Napi::CallbackInfo &info);
	Napi::Value Delete(const Napi::CallbackInfo &info);
	Napi::Value Keys(const Napi::CallbackInfo &info);
	Napi::Value Entries(const Napi::CallbackInfo &info);
	Napi::Value UpdateBatch(const Napi::CallbackInfo &info);
	Napi::Value DeleteBatch(const Napi::CallbackInfo &info);
	Napi::Value Pin(const Napi::CallbackInfo &info);
	Napi::Value Close(const Napi::CallbackInfo &info);

	void CheckOpen(Napi::Env env, const char *op) const;
	void CheckKey(Napi::Env env, const char *op, size_t given) const;
	void CheckValue(Napi::Env env, const char *op, size_t given) const;
	Napi::Value EntriesByWalk(Napi::Env env);

	Fd fd_;
	std::string name_;
	uint32_t type_ = 0;
	uint32_t key_size_ = 0;
	uint32_t value_size_ = 0;
	uint32_t max_entries_ = 0;
	uint32_t id_ = 0;
	size_t value_bytes_ = 0; // what lookup returns/update takes (per-CPU: nCPU * round_up(v, 8))
};

} // namespace weir
