#include "pinned.h"

#include "link.h"
#include "map.h"
#include "netns.h"
#include "program.h"
#include "tc.h"
#include "util.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>

#include <cerrno>
#include <vector>

namespace weir {

namespace {

/// bpf_obj_get(path), checked to be the wanted kind ("map", "prog", "link").
Fd GetPinned(Napi::Env env, const std::string &path, const char *kind)
{
	Fd fd(bpf_obj_get(path.c_str()));
	if (!fd.valid())
		Throw(env, "bpf_obj_get", path, errno,
		      errno == ENOENT ? "nothing pinned there (is bpffs mounted and the path right?)" : "");
	std::string got = BpfFdKind(fd.get());
	if (got != kind)
		Throw(env, "bpf_obj_get", path, EINVAL,
		      std::string("expected a pinned ") + kind + ", found " +
			      (got.empty() ? "something else" : "a " + got));
	return fd;
}

int ArgIfindex(const Napi::CallbackInfo &info, const char *op, TcDir *dir)
{
	Napi::Env env = info.Env();
	if (info.Length() < 1 || !info[0].IsNumber())
		Throw(env, op, "", EINVAL, "ifindex must be a number");
	double d = info[0].As<Napi::Number>().DoubleValue();
	std::string dirs = ArgString(info, 1, op, "direction");
	if (!ParseTcDir(dirs, dir))
		Throw(env, op, "", EINVAL, "direction must be 'ingress' or 'egress', got '" + dirs + "'");
	if (!(d >= 0 && d <= 2147483647.0) || d != (double)(int64_t)d)
		Throw(env, op, "", EINVAL, "ifindex must be a non-negative integer");
	if (d == 0)
		Throw(env, op, "ifindex 0", ENODEV, "no interface with index 0");
	return (int)d;
}

/// The optional netns path argument i ("" when absent).
std::string ArgNetns(const Napi::CallbackInfo &info, size_t i, const char *op)
{
	if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull())
		return "";
	return ArgString(info, i, op, "netns");
}

Napi::Array Ids(Napi::Env env, const std::vector<uint32_t> &ids)
{
	Napi::Array out = Napi::Array::New(env, ids.size());
	for (size_t i = 0; i < ids.size(); i++)
		out.Set((uint32_t)i, Napi::Number::New(env, ids[i]));
	return out;
}

} // namespace

Napi::Value OpenPinnedMap(const Napi::CallbackInfo &info)
{
	std::string path = ArgString(info, 0, "openPinnedMap", "path");
	return Map::New(info.Env(), GetPinned(info.Env(), path, "map"), "");
}

Napi::Value OpenPinnedProgram(const Napi::CallbackInfo &info)
{
	std::string path = ArgString(info, 0, "openPinnedProgram", "path");
	return Program::New(info.Env(), GetPinned(info.Env(), path, "prog"), "");
}

Napi::Value OpenPinnedLink(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string path = ArgString(info, 0, "openPinnedLink", "path");
	Fd fd = GetPinned(env, path, "link");
	struct bpf_link_info li = {};
	__u32 len = sizeof(li);
	int ret = bpf_obj_get_info_by_fd(fd.get(), &li, &len);
	if (ret)
		Throw(env, "bpf_obj_get_info_by_fd", path, ErrOf(ret));
	LinkKind kind;
	if (li.type == kBpfLinkTypeTcx)
		kind = LinkKind::Tcx;
	else if (li.type == BPF_LINK_TYPE_CGROUP)
		kind = LinkKind::Cgroup;
	else
		Throw(env, "openPinnedLink", path, EINVAL,
		      "link type " + std::to_string(li.type) + " is neither tcx nor cgroup");
	return Link::New(env, LinkInit{kind, std::move(fd), 0, TcDir::Ingress, 0, 0, path});
}

Napi::Value LibbpfVersion(const Napi::CallbackInfo &info)
{
	std::string v = libbpf_version_string();
	if (!v.empty() && v[0] == 'v')
		v.erase(0, 1);
	return Napi::String::New(info.Env(), v);
}

Napi::Value TcxQueryJs(const Napi::CallbackInfo &info)
{
	TcDir dir;
	int ifindex = ArgIfindex(info, "tcxQuery", &dir);
	std::string netns = ArgNetns(info, 2, "tcxQuery");
	std::vector<uint32_t> ids;
	Failure f = InNetns(netns, [&]() -> Failure {
		if (int err = TcxQuery(ifindex, dir, &ids))
			return {"bpf(BPF_PROG_QUERY)", "ifindex " + std::to_string(ifindex), err};
		return {};
	});
	if (f.err)
		Throw(info.Env(), f);
	return Ids(info.Env(), ids);
}

Napi::Value TcLegacyQueryJs(const Napi::CallbackInfo &info)
{
	TcDir dir;
	int ifindex = ArgIfindex(info, "tcLegacyQuery", &dir);
	std::string netns = ArgNetns(info, 2, "tcLegacyQuery");
	std::vector<uint32_t> ids;
	Failure f = InNetns(netns, [&]() -> Failure {
		if (int err = TcLegacyQuery(ifindex, dir, &ids))
			return {"RTM_GETTFILTER", "ifindex " + std::to_string(ifindex), err};
		return {};
	});
	if (f.err)
		Throw(info.Env(), f);
	return Ids(info.Env(), ids);
}

Napi::Value IfNameToIndex(const Napi::CallbackInfo &info)
{
	std::string name = ArgString(info, 0, "ifNameToIndex", "name");
	std::string netns = ArgNetns(info, 1, "ifNameToIndex");
	unsigned index = 0;
	Failure f = InNetns(netns, [&]() -> Failure {
		index = if_nametoindex(name.c_str());
		return {};
	});
	if (f.err)
		Throw(info.Env(), f);
	return Napi::Number::New(info.Env(), index);
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo &info)
{
	int n = libbpf_num_possible_cpus();
	if (n < 0)
		Throw(info.Env(), "libbpf_num_possible_cpus", "", -n);
	return Napi::Number::New(info.Env(), n);
}

} // namespace weir
