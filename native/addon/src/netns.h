// Kernel work inside another network namespace without moving the process: the
// work runs on a short-lived native thread that setns()es into it and then exits.
#pragma once

#include "util.h"

#include <functional>
#include <string>

namespace weir {

/**
 * InNetns() - run fn in the network namespace at path (e.g. /run/netns/x or
 * /proc/<pid>/ns/net); inline when path is empty. fn must not touch JS.
 * Return: fn's Failure, or one for open()/setns() of the namespace.
 */
Failure InNetns(const std::string &path, const std::function<Failure()> &fn);

/// The optional `netns` string option of an options object ("" when absent).
std::string NetnsOption(Napi::Env env, Napi::Value opts, const char *op);

/// The optional positional `netns` argument info[i] ("" when absent).
std::string NetnsArg(const Napi::CallbackInfo &info, size_t i, const char *op);

/// binding.netnsCookie(netns?): SO_NETNS_COOKIE of a socket opened in the namespace.
Napi::Value NetnsCookieJs(const Napi::CallbackInfo &info);

} // namespace weir
