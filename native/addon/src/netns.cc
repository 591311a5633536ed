#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <thread>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71 /* asm-generic/socket.h, Linux 5.14 */
#endif

namespace weir {

Failure InNetns(const std::string &path, const std::function<Failure()> &fn)
{
	if (path.empty())
		return fn();
	Fd ns(open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!ns.valid())
		return {"open", path, errno, "opening the network namespace"};
	Failure f;
	// Only this thread changes namespace, and it ends right after.
	std::thread t([&] {
		if (setns(ns.get(), CLONE_NEWNET) != 0) {
			f = {"setns", path, errno, "entering the network namespace"};
			return;
		}
		f = fn();
	});
	t.join();
	return f;
}

std::string NetnsOption(Napi::Env env, Napi::Value opts, const char *op)
{
	if (!opts.IsObject())
		return "";
	Napi::Value v = opts.As<Napi::Object>().Get("netns");
	if (v.IsUndefined() || v.IsNull())
		return "";
	if (!v.IsString())
		Throw(env, op, "", EINVAL, "netns must be a path string");
	return v.As<Napi::String>().Utf8Value();
}

std::string NetnsArg(const Napi::CallbackInfo &info, size_t i, const char *op)
{
	if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull())
		return "";
	return ArgString(info, i, op, "netns");
}

/**
 * NetnsCookieJs() - binding: netnsCookie(netns?).
 * The kernel's cookie of a network namespace (what bpf_get_netns_cookie() returns
 * for a socket in it): a socket is opened inside the namespace on a short-lived
 * thread and asked for SO_NETNS_COOKIE. Without a path, the caller's namespace.
 * Return: the cookie as a BigInt (never 0).
 */
Napi::Value NetnsCookieJs(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string netns = NetnsArg(info, 0, "netnsCookie");
	uint64_t cookie = 0;
	Failure f = InNetns(netns, [&]() -> Failure {
		Fd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
		if (!s.valid())
			return {"socket", netns, errno, "opening a socket in the network namespace"};
		socklen_t len = sizeof(cookie);
		if (getsockopt(s.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0)
			return {"getsockopt(SO_NETNS_COOKIE)", netns, errno,
				errno == ENOPROTOOPT ? "the kernel has no SO_NETNS_COOKIE (Linux 5.14+)" : ""};
		return {};
	});
	if (f.err)
		Throw(env, f);
	return Napi::BigInt::New(env, cookie);
}

} // namespace weir
