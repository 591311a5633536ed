// NativeProgram: one BPF program fd (owned): pin, BPF_PROG_TEST_RUN, attach.
#pragma once

#include "util.h"

#include <napi.h>

#include <string>

namespace weir {

class Program : public Napi::ObjectWrap<Program> {
public:
	static Napi::Function Define(Napi::Env env);
	/// Wraps fd (taken over). name: the object's program name, or "" for the kernel's.
	static Napi::Object New(Napi::Env env, Fd fd, const std::string &name);
	/// The Program behind a JS value, or a thrown EINVAL naming op.
	static Program *From(Napi::Env env, Napi::Value v, const char *op);

	explicit Program(const Napi::CallbackInfo &info);

	int fd() const { return fd_.get(); }
	const std::string &name() const { return name_; }
	void CheckOpen(Napi::Env env, const char *op) const;

private:
	Napi::Value GetFd(const Napi::CallbackInfo &info);
	Napi::Value Pin(const Napi::CallbackInfo &info);
	Napi::Value TestRun(const Napi::CallbackInfo &info);
	Napi::Value AttachTc(const Napi::CallbackInfo &info);
	Napi::Value AttachTcAsync(const Napi::CallbackInfo &info);
	Napi::Value AttachCgroup(const Napi::CallbackInfo &info);
	Napi::Value Close(const Napi::CallbackInfo &info);

	Fd fd_;
	std::string name_;
	uint32_t id_ = 0;
	uint32_t type_ = 0; // enum bpf_prog_type
};

} // namespace weir
