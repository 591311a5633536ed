#include "link.h"

#include "addon.h"
#include "netns.h"
#include "program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>

namespace weir {

namespace {

bpf_tc_attach_point Point(TcDir dir)
{
	return dir == TcDir::Ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}

} // namespace

Napi::Function Link::Define(Napi::Env env)
{
	return DefineClass(env, "NativeLink",
			   {
				   InstanceAccessor<&Link::GetKind>("kind"),
				   InstanceAccessor<&Link::GetFd>("fd"),
				   InstanceMethod<&Link::Pin>("pin"),
				   InstanceMethod<&Link::Update>("update"),
				   InstanceMethod<&Link::Detach>("detach"),
				   InstanceMethod<&Link::Close>("close"),
			   });
}

Napi::Object Link::New(Napi::Env env, LinkInit init)
{
	return Data(env).link.New({Napi::External<LinkInit>::New(env, &init)});
}

Link::Link(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Link>(info)
{
	if (!IsNativeInit<Link>(info))
		Throw(info.Env(), "NativeLink", "", EINVAL, "use attachTc(), attachCgroup() or openPinnedLink()");
	s_ = std::move(*info[0].As<Napi::External<LinkInit>>().Data());
}

// Garbage collection closes the fd: an unpinned BPF link then detaches, as with
// any BPF link whose last reference goes away. A legacy filter stays.
Link::~Link() = default;

Napi::Value Link::GetKind(const Napi::CallbackInfo &info)
{
	const char *k = s_.kind == LinkKind::Tcx ? "tcx" : s_.kind == LinkKind::Tc ? "tc" : "cgroup";
	return Napi::String::New(info.Env(), k);
}

Napi::Value Link::GetFd(const Napi::CallbackInfo &info)
{
	return Napi::Number::New(info.Env(), s_.fd.get());
}

Napi::Value Link::Pin(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string path = ArgString(info, 0, "bpf_obj_pin", "path");
	if (s_.kind == LinkKind::Tc)
		Throw(env, "bpf_obj_pin", path, EOPNOTSUPP,
		      "a legacy tc filter is not a BPF link and cannot be pinned");
	if (done_ || !s_.fd.valid())
		Throw(env, "bpf_obj_pin", path, EBADF, "the link is detached or closed");
	int ret = bpf_obj_pin(s_.fd.get(), path.c_str());
	if (ret)
		Throw(env, "bpf_obj_pin", path, ErrOf(ret), "pinning link " + s_.what);
	return env.Undefined();
}

Napi::Value Link::Update(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = s_.kind == LinkKind::Tc ? "bpf_tc_attach" : "bpf_link_update";
	if (info.Length() < 1)
		Throw(env, op, s_.what, EINVAL, "a program is required");
	Program *prog = Program::From(env, info[0], op);
	prog->CheckOpen(env, op);
	if (done_)
		Throw(env, op, s_.what, EBADF, "the link is detached or closed");
	if (s_.kind == LinkKind::Tc) {
		int prog_fd = prog->fd();
		Failure f = InNetns(s_.netns, [&]() -> Failure {
			DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = s_.ifindex, .attach_point = Point(s_.dir));
			DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE,
					    .handle = s_.handle, .priority = s_.priority);
			int ret = bpf_tc_attach(&hook, &opts);
			if (ret)
				return {op, s_.what, ErrOf(ret), "replacing with program " + prog->name()};
			return {};
		});
		if (f.err)
			Throw(env, f);
		return env.Undefined();
	}
	int ret = bpf_link_update(s_.fd.get(), prog->fd(), nullptr);
	if (ret)
		Throw(env, op, s_.what, ErrOf(ret), "replacing with program " + prog->name());
	return env.Undefined();
}

Napi::Value Link::Detach(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (done_)
		return env.Undefined();
	if (s_.kind == LinkKind::Tc) {
		Failure f = InNetns(s_.netns, [&]() -> Failure {
			DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = s_.ifindex, .attach_point = Point(s_.dir));
			DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = s_.handle, .priority = s_.priority);
			int ret = bpf_tc_detach(&hook, &opts);
			if (ret)
				return {"bpf_tc_detach", s_.what, ErrOf(ret)};
			return {};
		});
		// Already gone (filter, qdisc, interface or namespace): detached is what was asked.
		if (f.err && f.err != ENOENT && f.err != ENODEV && f.err != EINVAL)
			Throw(env, f);
	} else if (s_.fd.valid()) {
		int ret = bpf_link_detach(s_.fd.get());
		int err = ret ? ErrOf(ret) : 0;
		// ENOLINK: the hook went away with its interface or cgroup.
		if (err && err != ENOLINK && err != ENOENT)
			Throw(env, "bpf_link_detach", s_.what, err);
	}
	s_.fd.reset();
	done_ = true;
	return env.Undefined();
}

Napi::Value Link::Close(const Napi::CallbackInfo &info)
{
	s_.fd.reset();
	done_ = true;
	return info.Env().Undefined();
}

} // namespace weir
