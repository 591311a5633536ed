#include "netlink_socket.h"

#include "netns.h"

#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <vector>

namespace weir {

int NlSock::Open()
{
	fd_.reset(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
	if (!fd_.valid())
		return errno;
	struct sockaddr_nl sa = {};
	sa.nl_family = AF_NETLINK;
	if (bind(fd_.get(), (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return errno;
	int one = 1;
	setsockopt(fd_.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	return 0;
}

int NlSock::Talk(NlMsg &msg, const std::function<void(struct nlmsghdr *)> &each)
{
	msg.hdr()->nlmsg_seq = ++seq_;
	if (send(fd_.get(), msg.hdr(), msg.size(), 0) < 0)
		return errno;
	std::vector<char> buf(64 * 1024);
	for (;;) {
		ssize_t n = recv(fd_.get(), buf.data(), buf.size(), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		for (auto *h = reinterpret_cast<struct nlmsghdr *>(buf.data()); NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != seq_)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR) {
				auto *e = reinterpret_cast<struct nlmsgerr *>(NLMSG_DATA(h));
				return -e->error;
			}
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (each)
				each(h);
		}
	}
}

namespace {

/// The work of one call on the libuv pool; the netns switch happens on a thread of
/// its own inside (InNetns), so pool threads never change namespace.
class NlWorker : public Napi::AsyncWorker {
public:
	NlWorker(Napi::Env env, std::function<Failure()> work, NlDone done)
		: Napi::AsyncWorker(env, "weir:netlink"), work_(std::move(work)), done_(std::move(done)),
		  deferred_(Napi::Promise::Deferred::New(env))
	{
	}
	void Execute() override { f_ = work_(); }
	void OnOK() override
	{
		Napi::Env env = Env();
		if (f_.err)
			deferred_.Reject(MakeError(env, f_).Value());
		else
			deferred_.Resolve(done_ ? done_(env) : env.Undefined());
	}
	Napi::Promise Promise() const { return deferred_.Promise(); }

private:
	std::function<Failure()> work_;
	NlDone done_;
	Napi::Promise::Deferred deferred_;
	Failure f_;
};

} // namespace

Napi::Value NlQueue(Napi::Env env, std::function<Failure()> work, NlDone done)
{
	auto *w = new NlWorker(env, std::move(work), std::move(done));
	Napi::Promise p = w->Promise();
	w->Queue();
	return p;
}

Napi::Value NlRun(Napi::Env env, const std::string &netns, const char *op, std::function<Failure(NlSock &)> fn,
		  NlDone done)
{
	return NlQueue(
		env,
		[netns, op, fn]() -> Failure {
			Failure f = InNetns(netns, [&]() -> Failure {
				NlSock s;
				if (int err = s.Open())
					return {"socket(NETLINK_ROUTE)", netns, err};
				return fn(s);
			});
			if (f.err && f.op.empty())
				f.op = op;
			return f;
		},
		std::move(done));
}

int NlIfIndex(const std::string &name, Failure *f, const char *op)
{
	unsigned idx = if_nametoindex(name.c_str());
	if (!idx)
		*f = {op, name, ENODEV, "no such interface"};
	return (int)idx;
}

} // namespace weir
