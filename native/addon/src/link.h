// NativeLink: an attachment. A tcx or cgroup BPF link (owned fd), or a legacy
// clsact filter (no fd: identified by ifindex, direction, handle and priority).
#pragma once

#include "tc.h"
#include "util.h"

#include <napi.h>

#include <string>

namespace weir {

enum class LinkKind { Tcx, Tc, Cgroup };

struct LinkInit {
	LinkKind kind;
	Fd fd;		 // tcx/cgroup
	int ifindex = 0; // tc
	TcDir dir = TcDir::Ingress;
	uint32_t handle = 1;
	uint32_t priority = 1;
	std::string what;  // for messages: "ifindex 7 ingress", "/sys/fs/cgroup/… cgroup_inet4_connect"
	std::string netns; // tc: the namespace of ifindex ("" = ours)
};

class Link : public Napi::ObjectWrap<Link> {
public:
	static Napi::Function Define(Napi::Env env);
	static Napi::Object New(Napi::Env env, LinkInit init);

	explicit Link(const Napi::CallbackInfo &info);
	~Link() override;

private:
	Napi::Value GetKind(const Napi::CallbackInfo &info);
	Napi::Value GetFd(const Napi::CallbackInfo &info);
	Napi::Value Pin(const Napi::CallbackInfo &info);
	Napi::Value Update(const Napi::CallbackInfo &info);
	Napi::Value Detach(const Napi::CallbackInfo &info);
	Napi::Value Close(const Napi::CallbackInfo &info);

	LinkInit s_;
	bool done_ = false; // detached or closed
};

} // namespace weir
