// One rtnetlink socket and the call plumbing around it: a request is sent, its ack
// (or every part of a dump) read back, on a libuv pool thread, inside the caller's
// network namespace (netns.h), and the JS promise settled on the JS thread.
#pragma once

#include "netlink_attr.h"
#include "netns.h"
#include "util.h"

#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace weir {

/// One rtnetlink socket of the calling thread's netns.
class NlSock {
public:
	/// Return: 0 or a positive errno.
	int Open();
	/**
	 * Talk() - send msg and wait for its ack (or, for dumps, every part until
	 * NLMSG_DONE, each handed to `each`).
	 * Return: 0 or a positive errno from the kernel.
	 */
	int Talk(NlMsg &msg, const std::function<void(struct nlmsghdr *)> &each = nullptr);

private:
	Fd fd_;
	uint32_t seq_ = 0;
};

using NlDone = std::function<Napi::Value(Napi::Env)>;

/// Queues work on the libuv pool; the promise resolves with done(env) (undefined
/// without done) or rejects with the Failure.
Napi::Value NlQueue(Napi::Env env, std::function<Failure()> work, NlDone done = nullptr);

/**
 * NlRun() - run fn off the JS thread in netns ("" = ours) with an open rtnetlink
 * socket. fn must own (capture by value) everything it uses. A Failure without an op
 * is given op.
 */
Napi::Value NlRun(Napi::Env env, const std::string &netns, const char *op, std::function<Failure(NlSock &)> fn,
		  NlDone done = nullptr);

/// if_nametoindex in the current (thread's) netns; 0 with *f set (ENODEV) when missing.
int NlIfIndex(const std::string &name, Failure *f, const char *op);

/**
 * NlList() - an nl*List(netns?) call: dumps `get` (RTM_GETLINK …) of every family
 * in the netns of info[0], hands each reply of type `reply` (RTM_NEWLINK …) to
 * parse (pool thread; it adds a row or skips the message) and resolves with the
 * array of toJs(row) (JS thread). A failed dump is op = getName, subject "dump".
 */
template <typename Hdr, typename Row>
Napi::Value NlList(const Napi::CallbackInfo &info, const char *op, uint16_t get, const char *getName, uint16_t reply,
		   std::function<void(struct nlmsghdr *, std::vector<Row> *)> parse,
		   std::function<Napi::Object(Napi::Env, const Row &)> toJs)
{
	std::string netns = NetnsArg(info, 0, op);
	auto rows = std::make_shared<std::vector<Row>>();
	return NlRun(
		info.Env(), netns, op,
		[=](NlSock &s) -> Failure {
			NlMsg m(get, NLM_F_DUMP);
			m.Fixed<Hdr>(); // zeroed: family AF_UNSPEC
			int err = s.Talk(m, [&](struct nlmsghdr *h) {
				if (h->nlmsg_type == reply)
					parse(h, rows.get());
			});
			if (err)
				return {getName, "dump", err};
			return {};
		},
		[rows, toJs](Napi::Env env) -> Napi::Value {
			Napi::Array out = Napi::Array::New(env, rows->size());
			for (size_t i = 0; i < rows->size(); i++)
				out.Set((uint32_t)i, toJs(env, (*rows)[i]));
			return out;
		});
}

} // namespace weir
