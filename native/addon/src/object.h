// NativeObject: one bpf_object (an ELF file opened by libbpf), its load-time
// configuration (.rodata), pinning root and verifier log.
#pragma once

#include "util.h"

#include <napi.h>

#include <memory>
#include <string>

struct bpf_object;

namespace weir {

class Object : public Napi::ObjectWrap<Object> {
public:
	static Napi::Function Define(Napi::Env env);
	/// binding.openObject(path, opts?)
	static Napi::Value Open(const Napi::CallbackInfo &info);

	explicit Object(const Napi::CallbackInfo &info);
	~Object() override;

private:
	friend class LoadWorker;
	enum class State { Opened, Loading, Loaded, Failed, Closed };

	Napi::Value Load(const Napi::CallbackInfo &info);
	Napi::Value MapNames(const Napi::CallbackInfo &info);
	Napi::Value ProgramNames(const Napi::CallbackInfo &info);
	Napi::Value GetMap(const Napi::CallbackInfo &info);
	Napi::Value GetProgram(const Napi::CallbackInfo &info);
	Napi::Value Close(const Napi::CallbackInfo &info);

	void CheckUsable(Napi::Env env, const char *op) const;
	void CheckLoaded(Napi::Env env, const char *op, const std::string &what) const;
	void Destroy();

	struct bpf_object *obj_ = nullptr;
	std::string file_; // basename, for messages
	std::unique_ptr<char[]> log_buf_;
	size_t log_size_ = 0;
	State state_ = State::Opened;
	bool close_pending_ = false;
};

} // namespace weir
