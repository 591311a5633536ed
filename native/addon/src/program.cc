#include "program.h"

#include "addon.h"
#include "link.h"
#include "netns.h"
#include "tc.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace weir {

namespace {

constexpr int kEnotsupp = 524;
constexpr uint32_t kMaxTestRunOut = 64u << 20; // far above any packet the kernel runs
constexpr size_t kCtxOutSize = 4096;	       // above any program type's context

struct ProgramInit {
	Fd fd;
	std::string name;
};

/// Cgroup attach types by libbpf's name for them ('cgroup_inet4_connect' …).
bool CgroupAttachType(const std::string &name, enum bpf_attach_type *out)
{
	if (name.rfind("cgroup_", 0) != 0)
		return false;
	for (int t = 0; t < __MAX_BPF_ATTACH_TYPE; t++) {
		const char *s = libbpf_bpf_attach_type_str((enum bpf_attach_type)t);
		if (s && name == s) {
			*out = (enum bpf_attach_type)t;
			return true;
		}
	}
	return false;
}

} // namespace

Napi::Function Program::Define(Napi::Env env)
{
	return DefineClass(env, "NativeProgram",
			   {
				   InstanceAccessor<&Program::GetFd>("fd"),
				   InstanceMethod<&Program::Pin>("pin"),
				   InstanceMethod<&Program::TestRun>("testRun"),
				   InstanceMethod<&Program::AttachTc>("attachTc"),
				   InstanceMethod<&Program::AttachTcAsync>("attachTcAsync"),
				   InstanceMethod<&Program::AttachCgroup>("attachCgroup"),
				   InstanceMethod<&Program::Close>("close"),
			   });
}

Napi::Object Program::New(Napi::Env env, Fd fd, const std::string &name)
{
	ProgramInit init{std::move(fd), name};
	return Data(env).program.New({Napi::External<ProgramInit>::New(env, &init)});
}

Program *Program::From(Napi::Env env, Napi::Value v, const char *op)
{
	if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Data(env).program.Value()))
		Throw(env, op, "", EINVAL, "expected a NativeProgram");
	return Unwrap(v.As<Napi::Object>());
}

Program::Program(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Program>(info)
{
	Napi::Env env = info.Env();
	if (!IsNativeInit<Program>(info))
		Throw(env, "NativeProgram", "", EINVAL, "use openObject().program() or openPinnedProgram()");
	auto *init = info[0].As<Napi::External<ProgramInit>>().Data();
	fd_ = std::move(init->fd);
	struct bpf_prog_info pi = {};
	__u32 len = sizeof(pi);
	int ret = bpf_obj_get_info_by_fd(fd_.get(), &pi, &len);
	if (ret)
		Throw(env, "bpf_obj_get_info_by_fd", init->name, ErrOf(ret));
	name_ = init->name.empty() ? std::string(pi.name) : init->name;
	id_ = pi.id;
	type_ = pi.type;
	Napi::Object self = info.This().As<Napi::Object>();
	self.DefineProperties({
		Napi::PropertyDescriptor::Value("name", Napi::String::New(env, name_), napi_enumerable),
		Napi::PropertyDescriptor::Value("id", Napi::Number::New(env, id_), napi_enumerable),
	});
}

void Program::CheckOpen(Napi::Env env, const char *op) const
{
	if (!fd_.valid())
		Throw(env, op, name_, EBADF, "the program handle is closed");
}

Napi::Value Program::GetFd(const Napi::CallbackInfo &info)
{
	return Napi::Number::New(info.Env(), fd_.get());
}

Napi::Value Program::Pin(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	CheckOpen(env, "bpf_obj_pin");
	std::string path = ArgString(info, 0, "bpf_obj_pin", "path");
	int ret = bpf_obj_pin(fd_.get(), path.c_str());
	if (ret)
		Throw(env, "bpf_obj_pin", path, ErrOf(ret), "pinning program " + name_);
	return env.Undefined();
}

Napi::Value Program::TestRun(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = "bpf_prog_test_run_opts";
	CheckOpen(env, op);
	if (info.Length() < 1 || !info[0].IsObject())
		Throw(env, op, name_, EINVAL, "options object required");
	Napi::Object o = info[0].As<Napi::Object>();
	Napi::Value data = o.Get("data");
	if (!data.IsBuffer())
		Throw(env, op, name_, EINVAL, "data must be a Buffer");
	auto in = data.As<Napi::Buffer<uint8_t>>();
	auto num = [&](const char *key, uint32_t dflt) -> uint32_t {
		Napi::Value v = o.Get(key);
		if (v.IsUndefined() || v.IsNull())
			return dflt;
		double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
		if (!(d >= 0 && d <= 4294967295.0) || d != (double)(uint64_t)d)
			Throw(env, op, name_, EINVAL, std::string(key) + " must be a non-negative integer");
		return (uint32_t)d;
	};
	uint32_t repeat = num("repeat", 1);
	if (repeat < 1)
		Throw(env, op, name_, EINVAL, "repeat must be >= 1");
	uint32_t out_size = num("dataOutSize", (uint32_t)in.Length() + 256);
	if (out_size > kMaxTestRunOut)
		Throw(env, op, name_, EINVAL, "dataOutSize must be at most " + std::to_string(kMaxTestRunOut));
	std::vector<uint8_t> out(out_size);
	std::vector<uint8_t> ctx_in, ctx_out;
	Napi::Value ctx = o.Get("ctx");
	bool has_ctx = !(ctx.IsUndefined() || ctx.IsNull());
	if (has_ctx) {
		if (!ctx.IsBuffer())
			Throw(env, op, name_, EINVAL, "ctx must be a Buffer");
		auto c = ctx.As<Napi::Buffer<uint8_t>>();
		ctx_in.assign(c.Data(), c.Data() + c.Length());
		// The kernel writes back its whole context struct (e.g. __sk_buff).
		ctx_out.resize(std::max<size_t>(ctx_in.size(), kCtxOutSize));
	}
	DECLARE_LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.Data(), .data_out = out.data(),
			    .data_size_in = (__u32)in.Length(), .data_size_out = out_size,
			    .ctx_in = has_ctx ? ctx_in.data() : nullptr, .ctx_out = has_ctx ? ctx_out.data() : nullptr,
			    .ctx_size_in = (__u32)ctx_in.size(), .ctx_size_out = (__u32)ctx_out.size(),
			    .repeat = (int)repeat);
	int ret = bpf_prog_test_run_opts(fd_.get(), &opts);
	if (ret) {
		int err = ErrOf(ret);
		std::string detail;
		if (err == ENOSPC && opts.data_size_out > out_size)
			detail = "dataOutSize " + std::to_string(out_size) + " is too small, the output is " +
				 std::to_string(opts.data_size_out) + " bytes";
		Throw(env, op, name_, err, detail);
	}
	Napi::Object r = Napi::Object::New(env);
	r.Set("retval", Napi::Number::New(env, (int32_t)opts.retval));
	r.Set("duration", Napi::Number::New(env, opts.duration));
	r.Set("dataOut",
	      Napi::Buffer<uint8_t>::Copy(env, out.data(), std::min<size_t>(opts.data_size_out, out.size())));
	if (has_ctx)
		r.Set("ctxOut", Napi::Buffer<uint8_t>::Copy(env, ctx_out.data(),
							    std::min<size_t>(opts.ctx_size_out, ctx_out.size())));
	else
		r.Set("ctxOut", env.Null());
	return r;
}

namespace {

struct TcAttached {
	LinkKind kind = LinkKind::Tcx;
	Fd fd;
	uint32_t handle = 0, priority = 0;
};

/**
 * AttachTcHere() - attach prog_fd at ifindex in the calling thread's netns: a tcx
 * link, or (no tcx in the kernel, or legacy asked for) a clsact filter with handle
 * 1, priority 1. On failure nothing we created stays behind.
 */
Failure AttachTcHere(int prog_fd, const std::string &prog, int ifindex, TcDir dir, bool legacy, const std::string &what,
		     TcAttached *out)
{
	if (int err = CheckIfindex(ifindex))
		return {"if_indextoname", what, err,
			"no interface with index " + std::to_string(ifindex) + " in this netns"};
	if (!legacy) {
		DECLARE_LIBBPF_OPTS(bpf_link_create_opts, lopts);
		int fd = bpf_link_create(prog_fd, ifindex,
					 (enum bpf_attach_type)(dir == TcDir::Ingress ? kBpfTcxIngress : kBpfTcxEgress),
					 &lopts);
		if (fd >= 0) {
			out->kind = LinkKind::Tcx;
			out->fd.reset(fd);
			return {};
		}
		int err = ErrOf(fd);
		if (err != EINVAL && err != EOPNOTSUPP && err != kEnotsupp)
			return {"bpf_link_create", what, err, "attaching program " + prog + " via tcx"};
		// No tcx in this kernel: fall back to a clsact filter.
	}
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
			    .attach_point = dir == TcDir::Ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS);
	int ret = bpf_tc_hook_create(&hook);
	int err = ret ? ErrOf(ret) : 0;
	if (err && err != EEXIST)
		return {"bpf_tc_hook_create", what, err, "creating the clsact qdisc"};
	bool created = err == 0;
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .handle = 1, .priority = 1);
	ret = bpf_tc_attach(&hook, &opts);
	if (ret) {
		err = ErrOf(ret);
		if (created) { // leave nothing behind that we made
			hook.attach_point = (bpf_tc_attach_point)(BPF_TC_INGRESS | BPF_TC_EGRESS);
			bpf_tc_hook_destroy(&hook);
		}
		return {"bpf_tc_attach", what, err,
			err == EEXIST ? "a filter with handle 1 priority 1 is already attached"
				      : "attaching program " + prog + " as a clsact filter"};
	}
	out->kind = LinkKind::Tc;
	out->handle = opts.handle;
	out->priority = opts.priority;
	return {};
}

} // namespace

namespace {

struct TcRequest {
	int ifindex = 0;
	TcDir dir = TcDir::Ingress;
	bool legacy = false;
	std::string netns, what;
};

} // namespace

/// The arguments of attachTc/attachTcAsync, checked on the JS thread.
static TcRequest ParseTcRequest(const Napi::CallbackInfo &info, const std::string &prog, uint32_t type, const char *op)
{
	Napi::Env env = info.Env();
	if (info.Length() < 1 || !info[0].IsNumber())
		Throw(env, op, prog, EINVAL, "ifindex must be a number");
	double dif = info[0].As<Napi::Number>().DoubleValue();
	std::string dirs = ArgString(info, 1, op, "direction");
	TcRequest r;
	if (!ParseTcDir(dirs, &r.dir))
		Throw(env, op, prog, EINVAL, "direction must be 'ingress' or 'egress', got '" + dirs + "'");
	if (info.Length() > 2 && info[2].IsObject()) {
		r.legacy = info[2].As<Napi::Object>().Get("legacy").ToBoolean();
		r.netns = NetnsOption(env, info[2], op);
	}
	if (!(dif >= 0 && dif <= 2147483647.0) || dif != (double)(int64_t)dif)
		Throw(env, op, prog, EINVAL, "ifindex must be a non-negative integer");
	r.ifindex = (int)dif;
	if (type != BPF_PROG_TYPE_SCHED_CLS)
		Throw(env, op, prog, EINVAL,
		      "not a tc program (prog type " + std::to_string(type) + ", want BPF_PROG_TYPE_SCHED_CLS)");
	r.what = "ifindex " + std::to_string(r.ifindex) + " " + dirs + (r.netns.empty() ? "" : " in " + r.netns);
	return r;
}

Napi::Value Program::AttachTc(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	CheckOpen(env, "attachTc");
	TcRequest r = ParseTcRequest(info, name_, type_, "attachTc");
	TcAttached a;
	int prog_fd = fd_.get();
	Failure f =
		InNetns(r.netns, [&] { return AttachTcHere(prog_fd, name_, r.ifindex, r.dir, r.legacy, r.what, &a); });
	if (f.err)
		Throw(env, f);
	LinkInit init{a.kind, std::move(a.fd), r.ifindex, r.dir, a.handle, a.priority, r.what};
	init.netns = r.netns;
	return Link::New(env, std::move(init));
}

namespace {

/**
 * TcAttachWorker - attachTc off the JS thread. A tcx attach waits for RCU grace
 * periods in the kernel (milliseconds each); on the pool, concurrent attaches share
 * them and the event loop keeps serving. Owns a duplicate of the program fd.
 */
class TcAttachWorker : public Napi::AsyncWorker {
public:
	TcAttachWorker(Napi::Env env, Fd prog, std::string name, TcRequest r)
		: Napi::AsyncWorker(env, "weir:attachTc"), prog_(std::move(prog)), name_(std::move(name)),
		  r_(std::move(r)), deferred_(Napi::Promise::Deferred::New(env))
	{
	}
	void Execute() override
	{
		int fd = prog_.get();
		f_ = InNetns(r_.netns,
			     [&] { return AttachTcHere(fd, name_, r_.ifindex, r_.dir, r_.legacy, r_.what, &a_); });
	}
	void OnOK() override
	{
		Napi::Env env = Env();
		if (f_.err) {
			deferred_.Reject(MakeError(env, f_).Value());
			return;
		}
		try {
			LinkInit init{a_.kind, std::move(a_.fd), r_.ifindex, r_.dir, a_.handle, a_.priority, r_.what};
			init.netns = r_.netns;
			deferred_.Resolve(Link::New(env, std::move(init)));
		} catch (const Napi::Error &e) {
			deferred_.Reject(e.Value());
		}
	}
	Napi::Promise Promise() const { return deferred_.Promise(); }

private:
	Fd prog_;
	std::string name_;
	TcRequest r_;
	TcAttached a_;
	Failure f_;
	Napi::Promise::Deferred deferred_;
};

} // namespace

Napi::Value Program::AttachTcAsync(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	CheckOpen(env, "attachTcAsync");
	TcRequest r = ParseTcRequest(info, name_, type_, "attachTcAsync");
	Fd dup(fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
	if (!dup.valid())
		Throw(env, "fcntl(F_DUPFD_CLOEXEC)", name_, errno);
	auto *w = new TcAttachWorker(env, std::move(dup), name_, std::move(r));
	Napi::Promise p = w->Promise();
	w->Queue();
	return p;
}

/**
 * AttachCgroup() - binding: program.attachCgroup(cgroupPath, attachType).
 * A cgroup BPF link (bpf_link_create on the cgroup v2 directory's fd): several
 * programs share a hook (links are always multi-attach), bpf_link_update swaps the
 * program atomically, and a pinned link outlives the process.
 * Return: a NativeLink of kind 'cgroup'.
 */
Napi::Value Program::AttachCgroup(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	CheckOpen(env, "attachCgroup");
	std::string path = ArgString(info, 0, "attachCgroup", "cgroupPath");
	std::string type = ArgString(info, 1, "attachCgroup", "attachType");
	enum bpf_attach_type at;
	if (!CgroupAttachType(type, &at))
		Throw(env, "attachCgroup", type, EINVAL,
		      "unknown cgroup attach type '" + type + "' (e.g. cgroup_inet4_connect, cgroup_sock_ops)");
	Fd cg(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (!cg.valid())
		Throw(env, "open", path, errno, "opening the cgroup directory");
	std::string what = path + " " + type;
	int fd = bpf_link_create(fd_.get(), cg.get(), at, nullptr);
	if (fd < 0)
		Throw(env, "bpf_link_create", what, ErrOf(fd), "attaching program " + name_);
	return Link::New(env, LinkInit{LinkKind::Cgroup, Fd(fd), 0, TcDir::Ingress, 0, 0, what});
}

Napi::Value Program::Close(const Napi::CallbackInfo &info)
{
	fd_.reset();
	return info.Env().Undefined();
}

} // namespace weir
