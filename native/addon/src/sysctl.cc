// Per-netns net.* sysctls: /proc/sys/net as a thread inside the namespace sees it
// (registered with the rtnetlink calls, since pod wiring uses them together).
#include "netlink.h"

#include "netlink_socket.h"
#include "netns.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

namespace weir {

namespace {

/// "net.ipv4.conf.eth0.rp_filter" -> "/proc/sys/net/ipv4/conf/eth0/rp_filter".
/// Interface names may hold dots; callers pass the path form ("net/ipv4/conf/eth0.1/x")
/// for those. Refuses anything that could leave /proc/sys/net.
bool SysctlPath(const std::string &key, std::string *path)
{
	std::string k = key;
	if (k.find('/') == std::string::npos)
		for (char &c : k)
			if (c == '.')
				c = '/';
	if (k.rfind("net/", 0) != 0 || k.find("..") != std::string::npos)
		return false;
	*path = "/proc/sys/" + k;
	return true;
}

} // namespace

/// nlSysctlWrite(key, value, netns?): net.* sysctls of that netns (opened from a thread in it).
Napi::Value NlSysctlWrite(const Napi::CallbackInfo &info)
{
	const char *op = "nlSysctlWrite";
	Napi::Env env = info.Env();
	std::string key = ArgString(info, 0, op, "key");
	std::string value = ArgString(info, 1, op, "value");
	std::string netns = NetnsArg(info, 2, op);
	std::string path;
	if (!SysctlPath(key, &path))
		Throw(env, op, key, EINVAL, "only net.* sysctls");
	return NlQueue(env, [=]() -> Failure {
		return InNetns(netns, [&]() -> Failure {
			Fd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
			if (!fd.valid())
				return {"open", path, errno};
			if (write(fd.get(), value.data(), value.size()) < 0)
				return {"write", path, errno};
			return {};
		});
	});
}

/// nlSysctlRead(key, netns?) -> value without the trailing newline.
Napi::Value NlSysctlRead(const Napi::CallbackInfo &info)
{
	const char *op = "nlSysctlRead";
	Napi::Env env = info.Env();
	std::string key = ArgString(info, 0, op, "key");
	std::string netns = NetnsArg(info, 1, op);
	std::string path;
	auto out = std::make_shared<std::string>();
	if (!SysctlPath(key, &path))
		Throw(env, op, key, EINVAL, "only net.* sysctls");
	return NlQueue(
		env,
		[=]() -> Failure {
			return InNetns(netns, [&]() -> Failure {
				Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
				if (!fd.valid())
					return {"open", path, errno};
				char buf[256];
				ssize_t n = read(fd.get(), buf, sizeof(buf));
				if (n < 0)
					return {"read", path, errno};
				out->assign(buf, n);
				while (!out->empty() && (out->back() == '\n' || out->back() == ' '))
					out->pop_back();
				return {};
			});
		},
		[out](Napi::Env env) -> Napi::Value { return Napi::String::New(env, *out); });
}

} // namespace weir
