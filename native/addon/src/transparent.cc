#include "transparent.h"

#include "netlink_socket.h"
#include "netns.h"
#include "util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>

namespace weir {

namespace {

struct Endpoint4 {
	struct sockaddr_in sa = {};
	std::string text;
};

Endpoint4 ArgEndpoint(Napi::Env env, Napi::Object o, const char *addrKey, const char *portKey, const char *op,
		      bool portRequired)
{
	Endpoint4 e;
	std::string addr = OptString(env, o, addrKey, op, true);
	int64_t port = OptInt(env, o, portKey, op, portRequired ? -1 : 0);
	if (port < 0 || port > 65535)
		Throw(env, op, addr, EINVAL, std::string(portKey) + " must be a port in [0, 65535]");
	e.sa.sin_family = AF_INET;
	e.sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr.c_str(), &e.sa.sin_addr) != 1)
		Throw(env, op, addr, EINVAL, std::string(addrKey) + " must be an IPv4 address");
	e.text = addr + ":" + std::to_string(port);
	return e;
}

/**
 * TransparentSocket() - a TCP socket (non-blocking, close-on-exec) with IP_TRANSPARENT,
 * SO_MARK when mark is non-zero, and extra options, bound to local.
 * Return: the fd, or -1 with *f set (op = the failing call).
 */
int TransparentSocket(const Endpoint4 &local, uint32_t mark, bool listener, Failure *f)
{
	Fd s(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!s.valid()) {
		*f = {"socket", local.text, errno};
		return -1;
	}
	int one = 1;
	if (setsockopt(s.get(), SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) != 0) {
		*f = {"setsockopt(IP_TRANSPARENT)", local.text, errno, errno == EPERM ? "needs CAP_NET_ADMIN" : ""};
		return -1;
	}
	if (mark && setsockopt(s.get(), SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
		*f = {"setsockopt(SO_MARK)", local.text, errno, errno == EPERM ? "needs CAP_NET_ADMIN" : ""};
		return -1;
	}
	if (listener && setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
		*f = {"setsockopt(SO_REUSEADDR)", local.text, errno};
		return -1;
	}
	if (bind(s.get(), (const struct sockaddr *)&local.sa, sizeof(local.sa)) != 0) {
		*f = {"bind", local.text, errno, errno == EADDRINUSE ? "another socket holds the address" : ""};
		return -1;
	}
	return s.release();
}

} // namespace

/**
 * TcpListenTransparent() - binding: the ztunnel's capture listener.
 * A packet bpf_sk_assign()ed to it (whatever its destination) is accepted, and the
 * accepted socket's local address is the packet's original destination.
 * Return: the listening fd; JS owns it.
 */
Napi::Value TcpListenTransparent(const Napi::CallbackInfo &info)
{
	const char *op = "tcpListenTransparent";
	Napi::Env env = info.Env();
	Napi::Object o = ArgObject(info, 0, op);
	Endpoint4 local = ArgEndpoint(env, o, "address", "port", op, true);
	uint32_t mark = (uint32_t)OptInt(env, o, "mark", op, 0);
	int backlog = (int)OptInt(env, o, "backlog", op, 511);
	std::string netns = NetnsOption(env, o, op);
	int fd = -1;
	Failure f = InNetns(netns, [&]() -> Failure {
		Failure e;
		Fd s(TransparentSocket(local, mark, true, &e));
		if (!s.valid())
			return e;
		if (listen(s.get(), backlog) != 0)
			return {"listen", local.text, errno};
		fd = s.release();
		return {};
	});
	if (f.err)
		Throw(env, f);
	return Napi::Number::New(env, fd);
}

/**
 * TcpConnectTransparent() - binding: a connection from a foreign source address.
 * The socket is bound to source:sourcePort (sourcePort 0: the kernel picks one) although
 * no interface has that address, and connected to address:port, on the libuv pool
 * (the wait for the handshake never blocks the event loop; timeoutMs, default 5000).
 * Return: a promise of the connected fd (JS owns it), or a NativeError with op
 * 'connect' (ECONNREFUSED, ETIMEDOUT …) or the failing setup call.
 */
Napi::Value TcpConnectTransparent(const Napi::CallbackInfo &info)
{
	const char *op = "tcpConnectTransparent";
	Napi::Env env = info.Env();
	Napi::Object o = ArgObject(info, 0, op);
	Endpoint4 local = ArgEndpoint(env, o, "source", "sourcePort", op, false);
	Endpoint4 remote = ArgEndpoint(env, o, "address", "port", op, true);
	uint32_t mark = (uint32_t)OptInt(env, o, "mark", op, 0);
	int timeoutMs = (int)OptInt(env, o, "timeoutMs", op, 5000);
	std::string netns = NetnsOption(env, o, op);
	auto fd = std::make_shared<int>(-1);
	return NlQueue(
		env,
		[=]() -> Failure {
			return InNetns(netns, [&]() -> Failure {
				Failure e;
				Fd s(TransparentSocket(local, mark, false, &e));
				if (!s.valid())
					return e;
				std::string what = local.text + " -> " + remote.text;
				if (connect(s.get(), (const struct sockaddr *)&remote.sa, sizeof(remote.sa)) != 0) {
					if (errno != EINPROGRESS)
						return {"connect", what, errno};
					struct pollfd p = {s.get(), POLLOUT, 0};
					int n;
					do
						n = poll(&p, 1, timeoutMs);
					while (n < 0 && errno == EINTR);
					if (n < 0)
						return {"poll", what, errno};
					if (n == 0)
						return {"connect", what, ETIMEDOUT,
							"no answer within " + std::to_string(timeoutMs) + " ms"};
					int err = 0;
					socklen_t len = sizeof(err);
					if (getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0)
						return {"getsockopt(SO_ERROR)", what, errno};
					if (err)
						return {"connect", what, err};
				}
				*fd = s.release();
				return {};
			});
		},
		[fd](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *fd); });
}

} // namespace weir
