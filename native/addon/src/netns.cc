#include "netns.h"

#include <fcntl.h>
#include <sched.h>

#include <cerrno>
#include <thread>

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

} // namespace weir
