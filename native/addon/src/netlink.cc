// Pod wiring over raw rtnetlink (NETLINK_ROUTE): veth pairs, links, addresses,
// routes, neighbours and per-netns sysctls, with no process forked per operation.
// Every call takes an optional netns path and then runs on a short-lived thread that
// entered that namespace (netns.cc), so the agent process never changes namespace.
// Raw rtnetlink rather than libnl/libmnl: the dozen messages the CNI needs fit in
// this file, and the addon keeps libelf as its only dynamic library.
#include "netlink.h"

#include "netns.h"
#include "util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h> // before the uapi headers (glibc/uapi if.h compat)
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <functional>
#include <vector>

namespace weir {

namespace {

/// A request under construction: nlmsghdr + fixed header + attributes.
class NlMsg {
public:
	NlMsg(uint16_t type, uint16_t flags) : buf_(NLMSG_HDRLEN, 0)
	{
		hdr()->nlmsg_type = type;
		hdr()->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
		hdr()->nlmsg_len = NLMSG_HDRLEN;
	}
	template <typename T> T *Fixed()
	{
		size_t off = buf_.size();
		buf_.resize(off + NLMSG_ALIGN(sizeof(T)), 0);
		hdr()->nlmsg_len = buf_.size();
		return reinterpret_cast<T *>(buf_.data() + off);
	}
	template <typename T> T *FixedAt(size_t off) { return reinterpret_cast<T *>(buf_.data() + off); }
	void Attr(uint16_t type, const void *data, size_t len)
	{
		size_t off = buf_.size();
		buf_.resize(off + RTA_ALIGN(RTA_LENGTH(len)), 0);
		auto *rta = reinterpret_cast<struct rtattr *>(buf_.data() + off);
		rta->rta_type = type;
		rta->rta_len = RTA_LENGTH(len);
		if (len)
			memcpy(RTA_DATA(rta), data, len);
		hdr()->nlmsg_len = buf_.size();
	}
	void U32(uint16_t type, uint32_t v) { Attr(type, &v, sizeof(v)); }
	void Str(uint16_t type, const std::string &s) { Attr(type, s.c_str(), s.size() + 1); }
	/// Opens a nested attribute; returns its offset for End().
	size_t Begin(uint16_t type)
	{
		size_t off = buf_.size();
		Attr(type, nullptr, 0);
		return off;
	}
	void End(size_t off)
	{
		reinterpret_cast<struct rtattr *>(buf_.data() + off)->rta_len = buf_.size() - off;
	}
	struct nlmsghdr *hdr() { return reinterpret_cast<struct nlmsghdr *>(buf_.data()); }
	size_t size() const { return buf_.size(); }

private:
	std::vector<char> buf_;
};

/// One rtnetlink socket of the calling thread's netns.
class NlSock {
public:
	int Open()
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
	/// Sends msg and waits for its ack (or, for dumps, every part until NLMSG_DONE).
	/// Return: 0 or a positive errno from the kernel.
	int Talk(NlMsg &msg, const std::function<void(struct nlmsghdr *)> &each = nullptr)
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

private:
	Fd fd_;
	uint32_t seq_ = 0;
};

bool ParseMac(const std::string &s, uint8_t out[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return false;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 255)
			return false;
		out[i] = (uint8_t)v[i];
	}
	return true;
}

std::string MacString(const uint8_t *m, size_t len)
{
	std::string s;
	char b[4];
	for (size_t i = 0; i < len; i++) {
		snprintf(b, sizeof(b), i ? ":%02x" : "%02x", m[i]);
		s += b;
	}
	return s;
}

/// An address with its family and bytes ("10.0.0.1" or "fd00::1").
struct Ip {
	int family = 0;
	uint8_t bytes[16] = {};
	size_t len() const { return family == AF_INET ? 4 : 16; }
};

bool ParseIp(const std::string &s, Ip *ip)
{
	if (inet_pton(AF_INET, s.c_str(), ip->bytes) == 1) {
		ip->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s.c_str(), ip->bytes) == 1) {
		ip->family = AF_INET6;
		return true;
	}
	return false;
}

/// "10.0.0.1/32" (a bare address means a host prefix).
bool ParseCidr(const std::string &s, Ip *ip, int *plen)
{
	size_t slash = s.find('/');
	if (!ParseIp(s.substr(0, slash), ip))
		return false;
	int max = ip->family == AF_INET ? 32 : 128;
	if (slash == std::string::npos) {
		*plen = max;
		return true;
	}
	std::string p = s.substr(slash + 1);
	if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos)
		return false;
	*plen = std::stoi(p);
	return *plen <= max;
}

std::string IpString(int family, const void *data)
{
	char b[INET6_ADDRSTRLEN] = {};
	inet_ntop(family, data, b, sizeof(b));
	return b;
}

// ---- argument helpers (JS thread) -------------------------------------------------

Napi::Object ArgObject(const Napi::CallbackInfo &info, size_t i, const char *op)
{
	if (info.Length() <= i || !info[i].IsObject())
		Throw(info.Env(), op, "", EINVAL, "options object expected");
	return info[i].As<Napi::Object>();
}

std::string OptString(Napi::Env env, Napi::Object o, const char *key, const char *op, bool required)
{
	Napi::Value v = o.Get(key);
	if (v.IsUndefined() || v.IsNull()) {
		if (required)
			Throw(env, op, "", EINVAL, std::string(key) + " is required");
		return "";
	}
	if (!v.IsString())
		Throw(env, op, "", EINVAL, std::string(key) + " must be a string");
	return v.As<Napi::String>().Utf8Value();
}

int64_t OptInt(Napi::Env env, Napi::Object o, const char *key, const char *op, int64_t dflt)
{
	Napi::Value v = o.Get(key);
	if (v.IsUndefined() || v.IsNull())
		return dflt;
	if (!v.IsNumber())
		Throw(env, op, "", EINVAL, std::string(key) + " must be a number");
	double d = v.As<Napi::Number>().DoubleValue();
	if (d != (double)(int64_t)d || d < 0 || d > 4294967295.0)
		Throw(env, op, "", EINVAL, std::string(key) + " must be a non-negative integer");
	return (int64_t)d;
}

int OptBool(Napi::Env env, Napi::Object o, const char *key, const char *op)
{
	Napi::Value v = o.Get(key);
	if (v.IsUndefined() || v.IsNull())
		return -1;
	if (!v.IsBoolean())
		Throw(env, op, "", EINVAL, std::string(key) + " must be a boolean");
	return v.As<Napi::Boolean>().Value() ? 1 : 0;
}

std::string Netns(const Napi::CallbackInfo &info, size_t i, const char *op)
{
	if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull())
		return "";
	return ArgString(info, i, op, "netns");
}

/// The work of one call on the libuv pool; the netns switch happens on a thread of
/// its own inside (InNetns), so pool threads never change namespace.
class NlWorker : public Napi::AsyncWorker {
public:
	NlWorker(Napi::Env env, std::function<Failure()> work, std::function<Napi::Value(Napi::Env)> done)
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
	std::function<Napi::Value(Napi::Env)> done_;
	Napi::Promise::Deferred deferred_;
	Failure f_;
};

/// Queues work on the pool; resolves with done(env) or rejects with the Failure.
Napi::Value Queue(Napi::Env env, std::function<Failure()> work, std::function<Napi::Value(Napi::Env)> done = nullptr)
{
	auto *w = new NlWorker(env, std::move(work), std::move(done));
	Napi::Promise p = w->Promise();
	w->Queue();
	return p;
}

/// Runs fn off the JS thread in the netns with an open rtnetlink socket. fn must own
/// (capture by value) everything it uses.
Napi::Value Run(Napi::Env env, const std::string &netns, const char *op, std::function<Failure(NlSock &)> fn,
		std::function<Napi::Value(Napi::Env)> done = nullptr)
{
	return Queue(
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

/// if_nametoindex in the current (thread's) netns.
int Index(const std::string &name, Failure *f, const char *op)
{
	unsigned idx = if_nametoindex(name.c_str());
	if (!idx)
		*f = {op, name, ENODEV, "no such interface"};
	return (int)idx;
}

// ---- links ----------------------------------------------------------------------

struct LinkRow {
	int ifindex = 0;
	std::string name, kind, mac;
	uint32_t mtu = 0, flags = 0, operstate = 0;
	int link = 0;          // IFLA_LINK: the peer's ifindex for a veth
	int linkNetnsid = -1;  // IFLA_LINK_NETNSID
	int master = 0;
};

void ParseLink(struct nlmsghdr *h, LinkRow *r)
{
	auto *ifi = reinterpret_cast<struct ifinfomsg *>(NLMSG_DATA(h));
	r->ifindex = ifi->ifi_index;
	r->flags = ifi->ifi_flags;
	int len = IFLA_PAYLOAD(h);
	for (auto *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		switch (a->rta_type) {
		case IFLA_IFNAME:
			r->name = (const char *)RTA_DATA(a);
			break;
		case IFLA_MTU:
			r->mtu = *(uint32_t *)RTA_DATA(a);
			break;
		case IFLA_ADDRESS:
			r->mac = MacString((const uint8_t *)RTA_DATA(a), RTA_PAYLOAD(a));
			break;
		case IFLA_OPERSTATE:
			r->operstate = *(uint8_t *)RTA_DATA(a);
			break;
		case IFLA_LINK:
			r->link = *(int *)RTA_DATA(a);
			break;
		case IFLA_LINK_NETNSID:
			r->linkNetnsid = *(int *)RTA_DATA(a);
			break;
		case IFLA_MASTER:
			r->master = *(int *)RTA_DATA(a);
			break;
		case IFLA_LINKINFO: {
			int l2 = RTA_PAYLOAD(a);
			for (auto *b = (struct rtattr *)RTA_DATA(a); RTA_OK(b, l2); b = RTA_NEXT(b, l2))
				if (b->rta_type == IFLA_INFO_KIND)
					r->kind = (const char *)RTA_DATA(b);
			break;
		}
		}
	}
}

Napi::Object LinkJs(Napi::Env env, const LinkRow &r)
{
	Napi::Object o = Napi::Object::New(env);
	o.Set("ifindex", r.ifindex);
	o.Set("name", r.name);
	o.Set("kind", r.kind);
	o.Set("mac", r.mac);
	o.Set("mtu", r.mtu);
	o.Set("up", (r.flags & IFF_UP) != 0);
	o.Set("operUp", r.operstate == IF_OPER_UP);
	o.Set("peerIfindex", r.link);
	o.Set("linkNetnsid", r.linkNetnsid);
	o.Set("master", r.master);
	return o;
}

int DumpLinks(NlSock &s, std::vector<LinkRow> *out)
{
	NlMsg m(RTM_GETLINK, NLM_F_DUMP);
	m.Fixed<struct ifinfomsg>()->ifi_family = AF_UNSPEC;
	return s.Talk(m, [&](struct nlmsghdr *h) {
		if (h->nlmsg_type != RTM_NEWLINK)
			return;
		LinkRow r;
		ParseLink(h, &r);
		out->push_back(r);
	});
}

} // namespace

/// nlVethAdd({name, peerName, peerNetns?, mtu?, peerMac?}, netns?)
Napi::Value NlVethAdd(const Napi::CallbackInfo &info)
{
	const char *op = "nlVethAdd";
	Napi::Env env = info.Env();
	Napi::Object o = ArgObject(info, 0, op);
	std::string name = OptString(env, o, "name", op, true);
	std::string peer = OptString(env, o, "peerName", op, true);
	std::string peerNetns = OptString(env, o, "peerNetns", op, false);
	std::string peerMac = OptString(env, o, "peerMac", op, false);
	uint32_t mtu = (uint32_t)OptInt(env, o, "mtu", op, 0);
	std::string netns = Netns(info, 1, op);
	if (name.size() >= IFNAMSIZ || peer.size() >= IFNAMSIZ || name.empty() || peer.empty())
		Throw(env, op, name, EINVAL, "interface names must be 1..15 characters");
	uint8_t mac[6];
	if (!peerMac.empty() && !ParseMac(peerMac, mac))
		Throw(env, op, peerMac, EINVAL, "peerMac must be aa:bb:cc:dd:ee:ff");
	auto peerNs = std::make_shared<Fd>();
	if (!peerNetns.empty()) {
		peerNs->reset(open(peerNetns.c_str(), O_RDONLY | O_CLOEXEC));
		if (!peerNs->valid())
			Throw(env, "open", peerNetns, errno, "opening the peer's network namespace");
	}
	return Run(env, netns, op, [=](NlSock &s) -> Failure {
		NlMsg m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
		m.Fixed<struct ifinfomsg>()->ifi_family = AF_UNSPEC;
		m.Str(IFLA_IFNAME, name);
		if (mtu)
			m.U32(IFLA_MTU, mtu);
		size_t li = m.Begin(IFLA_LINKINFO);
		m.Str(IFLA_INFO_KIND, "veth");
		size_t data = m.Begin(IFLA_INFO_DATA);
		size_t p = m.Begin(VETH_INFO_PEER);
		m.Fixed<struct ifinfomsg>()->ifi_family = AF_UNSPEC;
		m.Str(IFLA_IFNAME, peer);
		if (mtu)
			m.U32(IFLA_MTU, mtu);
		if (!peerMac.empty())
			m.Attr(IFLA_ADDRESS, mac, 6);
		// The peer is born in the pod's netns: its name never meets the host's names.
		if (peerNs->valid())
			m.U32(IFLA_NET_NS_FD, (uint32_t)peerNs->get());
		m.End(p);
		m.End(data);
		m.End(li);
		if (int err = s.Talk(m))
			return {"RTM_NEWLINK", name + "/" + peer, err,
				err == EEXIST ? "an interface with that name exists" : ""};
		return {};
	});
}

/// nlLinkSet(name, {up?, mtu?, mac?, newName?, netnsPath?}, netns?)
Napi::Value NlLinkSet(const Napi::CallbackInfo &info)
{
	const char *op = "nlLinkSet";
	Napi::Env env = info.Env();
	std::string name = ArgString(info, 0, op, "name");
	Napi::Object o = ArgObject(info, 1, op);
	int up = OptBool(env, o, "up", op);
	uint32_t mtu = (uint32_t)OptInt(env, o, "mtu", op, 0);
	std::string macs = OptString(env, o, "mac", op, false);
	std::string newName = OptString(env, o, "newName", op, false);
	std::string target = OptString(env, o, "netnsPath", op, false);
	std::string netns = Netns(info, 2, op);
	uint8_t mac[6];
	if (!macs.empty() && !ParseMac(macs, mac))
		Throw(env, op, macs, EINVAL, "mac must be aa:bb:cc:dd:ee:ff");
	if (newName.size() >= IFNAMSIZ)
		Throw(env, op, newName, EINVAL, "interface names must be at most 15 characters");
	auto targetNs = std::make_shared<Fd>();
	if (!target.empty()) {
		targetNs->reset(open(target.c_str(), O_RDONLY | O_CLOEXEC));
		if (!targetNs->valid())
			Throw(env, "open", target, errno, "opening the target network namespace");
	}
	return Run(env, netns, op, [=](NlSock &s) -> Failure {
		Failure f;
		int idx = Index(name, &f, op);
		if (!idx)
			return f;
		NlMsg m(RTM_NEWLINK, 0);
		auto *ifi = m.Fixed<struct ifinfomsg>();
		ifi->ifi_family = AF_UNSPEC;
		ifi->ifi_index = idx;
		if (up >= 0) {
			ifi->ifi_change = IFF_UP;
			ifi->ifi_flags = up ? IFF_UP : 0;
		}
		if (mtu)
			m.U32(IFLA_MTU, mtu);
		if (!macs.empty())
			m.Attr(IFLA_ADDRESS, mac, 6);
		if (!newName.empty())
			m.Str(IFLA_IFNAME, newName);
		if (targetNs->valid())
			m.U32(IFLA_NET_NS_FD, (uint32_t)targetNs->get());
		if (int err = s.Talk(m))
			return {"RTM_NEWLINK", name, err};
		return {};
	});
}

/// nlLinkDel(name, netns?) -> false when there was no such link.
Napi::Value NlLinkDel(const Napi::CallbackInfo &info)
{
	const char *op = "nlLinkDel";
	Napi::Env env = info.Env();
	std::string name = ArgString(info, 0, op, "name");
	std::string netns = Netns(info, 1, op);
	auto deleted = std::make_shared<bool>(false);
	return Run(env, netns, op, [=](NlSock &s) -> Failure {
		unsigned idx = if_nametoindex(name.c_str());
		if (!idx)
			return {};
		NlMsg m(RTM_DELLINK, 0);
		auto *ifi = m.Fixed<struct ifinfomsg>();
		ifi->ifi_family = AF_UNSPEC;
		ifi->ifi_index = (int)idx;
		int err = s.Talk(m);
		if (err == ENODEV)
			return {};
		if (err)
			return {"RTM_DELLINK", name, err};
		*deleted = true;
		return {};
	}, [deleted](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, *deleted); });
}

/// nlLinkList(netns?) -> links
Napi::Value NlLinkList(const Napi::CallbackInfo &info)
{
	const char *op = "nlLinkList";
	Napi::Env env = info.Env();
	std::string netns = Netns(info, 0, op);
	auto rows = std::make_shared<std::vector<LinkRow>>();
	return Run(env, netns, op, [=](NlSock &s) -> Failure {
		if (int err = DumpLinks(s, rows.get()))
			return {"RTM_GETLINK", "dump", err};
		return {};
	}, [rows](Napi::Env env) -> Napi::Value {
		Napi::Array out = Napi::Array::New(env, rows->size());
		for (size_t i = 0; i < rows->size(); i++)
			out.Set((uint32_t)i, LinkJs(env, (*rows)[i]));
		return out;
	});
}

// ---- addresses --------------------------------------------------------------------

namespace {

Napi::Value AddrChange(const Napi::CallbackInfo &info, bool add)
{
	const char *op = add ? "nlAddrAdd" : "nlAddrDel";
	Napi::Env env = info.Env();
	std::string dev = ArgString(info, 0, op, "dev");
	std::string cidr = ArgString(info, 1, op, "cidr");
	std::string netns = Netns(info, 2, op);
	Ip ip;
	int plen;
	if (!ParseCidr(cidr, &ip, &plen))
		Throw(env, op, cidr, EINVAL, "not an address/prefix");
	auto changed = std::make_shared<bool>(false);
	return Run(env, netns, op, [=](NlSock &s) -> Failure {
		Failure f;
		int idx = Index(dev, &f, op);
		if (!idx)
			return add ? f : Failure{};
		NlMsg m(add ? RTM_NEWADDR : RTM_DELADDR, add ? (NLM_F_CREATE | NLM_F_EXCL) : 0);
		auto *ifa = m.Fixed<struct ifaddrmsg>();
		ifa->ifa_family = ip.family;
		ifa->ifa_prefixlen = plen;
		ifa->ifa_index = idx;
		ifa->ifa_scope = RT_SCOPE_UNIVERSE;
		m.Attr(IFA_LOCAL, ip.bytes, ip.len());
		m.Attr(IFA_ADDRESS, ip.bytes, ip.len());
		int err = s.Talk(m);
		if (!add && err == EADDRNOTAVAIL)
			return {};
		if (err)
			return {add ? "RTM_NEWADDR" : "RTM_DELADDR", cidr + " dev " + dev, err};
		*changed = true;
		return {};
	}, [changed](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, *changed); });
}

} // namespace

Napi::Value NlAddrAdd(const Napi::CallbackInfo &info) { return AddrChange(info, true); }
Napi::Value NlAddrDel(const Napi::CallbackInfo &info) { return AddrChange(info, false); }

/// nlAddrList(netns?) -> [{ifindex, family, address, prefixLen, scope}]
Napi::Value NlAddrList(const Napi::CallbackInfo &info)
{
	const char *op = "nlAddrList";
	Napi::Env env = info.Env();
	std::string netns = Netns(info, 0, op);
	struct Row {
		int ifindex, family, plen, scope;
		std::string addr;
	};
	auto rows = std::make_shared<std::vector<Row>>();
	return Run(env, netns, op, [=](NlSock &s) -> Failure {
		NlMsg m(RTM_GETADDR, NLM_F_DUMP);
		m.Fixed<struct ifaddrmsg>()->ifa_family = AF_UNSPEC;
		int err = s.Talk(m, [&](struct nlmsghdr *h) {
			if (h->nlmsg_type != RTM_NEWADDR)
				return;
			auto *ifa = reinterpret_cast<struct ifaddrmsg *>(NLMSG_DATA(h));
			Row r{(int)ifa->ifa_index, ifa->ifa_family == AF_INET ? 4 : 6, ifa->ifa_prefixlen, ifa->ifa_scope, ""};
			int len = IFA_PAYLOAD(h);
			std::string local, address;
			for (auto *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
				if (a->rta_type == IFA_LOCAL)
					local = IpString(ifa->ifa_family, RTA_DATA(a));
				else if (a->rta_type == IFA_ADDRESS)
					address = IpString(ifa->ifa_family, RTA_DATA(a));
			}
			r.addr = local.empty() ? address : local;
			rows->push_back(r);
		});
		if (err)
			return {"RTM_GETADDR", "dump", err};
		return {};
	}, [rows](Napi::Env env) -> Napi::Value {
	Napi::Array out = Napi::Array::New(env, rows->size());
	for (size_t i = 0; i < rows->size(); i++) {
		Napi::Object o = Napi::Object::New(env);
		o.Set("ifindex", (*rows)[i].ifindex);
		o.Set("family", (*rows)[i].family);
		o.Set("address", (*rows)[i].addr);
		o.Set("prefixLen", (*rows)[i].plen);
		o.Set("scope", (*rows)[i].scope);
		out.Set((uint32_t)i, o);
	}
	return out;
	});
}

// ---- routes -----------------------------------------------------------------------

namespace {

struct RouteSpec {
	Ip dst;
	int plen = 0;
	Ip gw;
	bool hasGw = false;
	std::string dev;
	int scope = RT_SCOPE_UNIVERSE;
	bool onlink = false;
	uint32_t table = RT_TABLE_MAIN;
};

RouteSpec ArgRoute(const Napi::CallbackInfo &info, const char *op)
{
	Napi::Env env = info.Env();
	Napi::Object o = ArgObject(info, 0, op);
	RouteSpec r;
	std::string dst = OptString(env, o, "dst", op, true);
	if (!ParseCidr(dst, &r.dst, &r.plen))
		Throw(env, op, dst, EINVAL, "dst must be an address/prefix");
	std::string gw = OptString(env, o, "gateway", op, false);
	if (!gw.empty()) {
		if (!ParseIp(gw, &r.gw) || r.gw.family != r.dst.family)
			Throw(env, op, gw, EINVAL, "gateway must be an address of dst's family");
		r.hasGw = true;
	}
	r.dev = OptString(env, o, "dev", op, false);
	std::string scope = OptString(env, o, "scope", op, false);
	if (scope == "link")
		r.scope = RT_SCOPE_LINK;
	else if (scope == "host")
		r.scope = RT_SCOPE_HOST;
	else if (!scope.empty() && scope != "universe")
		Throw(env, op, scope, EINVAL, "scope must be 'universe', 'link' or 'host'");
	r.onlink = OptBool(env, o, "onlink", op) == 1;
	r.table = (uint32_t)OptInt(env, o, "table", op, RT_TABLE_MAIN);
	return r;
}

Napi::Value RouteChange(const Napi::CallbackInfo &info, bool add)
{
	const char *op = add ? "nlRouteAdd" : "nlRouteDel";
	Napi::Env env = info.Env();
	RouteSpec r = ArgRoute(info, op);
	std::string netns = Netns(info, 1, op);
	auto changed = std::make_shared<bool>(false);
	return Run(env, netns, op, [=](NlSock &s) -> Failure {
		int idx = 0;
		if (!r.dev.empty()) {
			Failure f;
			idx = Index(r.dev, &f, op);
			if (!idx)
				return add ? f : Failure{};
		}
		NlMsg m(add ? RTM_NEWROUTE : RTM_DELROUTE, add ? (NLM_F_CREATE | NLM_F_EXCL) : 0);
		auto *rt = m.Fixed<struct rtmsg>();
		rt->rtm_family = r.dst.family;
		rt->rtm_dst_len = r.plen;
		rt->rtm_table = r.table < 256 ? r.table : RT_TABLE_UNSPEC;
		rt->rtm_protocol = RTPROT_BOOT;
		rt->rtm_scope = add ? r.scope : RT_SCOPE_NOWHERE;
		rt->rtm_type = RTN_UNICAST;
		if (r.onlink)
			rt->rtm_flags |= RTNH_F_ONLINK;
		if (r.table >= 256)
			m.U32(RTA_TABLE, r.table);
		if (r.plen)
			m.Attr(RTA_DST, r.dst.bytes, r.dst.len());
		if (r.hasGw)
			m.Attr(RTA_GATEWAY, r.gw.bytes, r.gw.len());
		if (idx)
			m.U32(RTA_OIF, idx);
		int err = s.Talk(m);
		if (!add && err == ESRCH)
			return {};
		if (err)
			return {add ? "RTM_NEWROUTE" : "RTM_DELROUTE", IpString(r.dst.family, r.dst.bytes) + "/" +
				std::to_string(r.plen) + (r.dev.empty() ? "" : " dev " + r.dev), err};
		*changed = true;
		return {};
	}, [changed](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, *changed); });
}

} // namespace

Napi::Value NlRouteAdd(const Napi::CallbackInfo &info) { return RouteChange(info, true); }
Napi::Value NlRouteDel(const Napi::CallbackInfo &info) { return RouteChange(info, false); }

/// nlRouteList(netns?) -> main-table routes [{family, dst, gateway, ifindex, scope, table, onlink}]
Napi::Value NlRouteList(const Napi::CallbackInfo &info)
{
	const char *op = "nlRouteList";
	Napi::Env env = info.Env();
	std::string netns = Netns(info, 0, op);
	struct Row {
		int family, scope;
		uint32_t table;
		std::string dst, gw;
		int oif;
		bool onlink;
		int type;
	};
	auto rows = std::make_shared<std::vector<Row>>();
	return Run(env, netns, op, [=](NlSock &s) -> Failure {
		NlMsg m(RTM_GETROUTE, NLM_F_DUMP);
		m.Fixed<struct rtmsg>()->rtm_family = AF_UNSPEC;
		int err = s.Talk(m, [&](struct nlmsghdr *h) {
			if (h->nlmsg_type != RTM_NEWROUTE)
				return;
			auto *rt = reinterpret_cast<struct rtmsg *>(NLMSG_DATA(h));
			if (rt->rtm_family != AF_INET && rt->rtm_family != AF_INET6)
				return;
			Row r{rt->rtm_family == AF_INET ? 4 : 6, rt->rtm_scope, rt->rtm_table, "", "", 0,
			      (rt->rtm_flags & RTNH_F_ONLINK) != 0, rt->rtm_type};
			std::string dst = rt->rtm_family == AF_INET ? "0.0.0.0" : "::";
			int len = RTM_PAYLOAD(h);
			for (auto *a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
				if (a->rta_type == RTA_DST)
					dst = IpString(rt->rtm_family, RTA_DATA(a));
				else if (a->rta_type == RTA_GATEWAY)
					r.gw = IpString(rt->rtm_family, RTA_DATA(a));
				else if (a->rta_type == RTA_OIF)
					r.oif = *(int *)RTA_DATA(a);
				else if (a->rta_type == RTA_TABLE)
					r.table = *(uint32_t *)RTA_DATA(a);
			}
			r.dst = dst + "/" + std::to_string(rt->rtm_dst_len);
			rows->push_back(r);
		});
		if (err)
			return {"RTM_GETROUTE", "dump", err};
		return {};
	}, [rows](Napi::Env env) -> Napi::Value {
	Napi::Array out = Napi::Array::New(env);
	uint32_t n = 0;
	for (const Row &r : *rows) {
		if (r.table != RT_TABLE_MAIN)
			continue;
		Napi::Object o = Napi::Object::New(env);
		o.Set("family", r.family);
		o.Set("dst", r.dst);
		if (!r.gw.empty())
			o.Set("gateway", r.gw);
		o.Set("ifindex", r.oif);
		o.Set("scope", r.scope == RT_SCOPE_LINK ? "link" : r.scope == RT_SCOPE_HOST ? "host" : "universe");
		o.Set("table", r.table);
		o.Set("onlink", r.onlink);
		out.Set(n++, o);
	}
	return out;
	});
}

// ---- neighbours -------------------------------------------------------------------

/// nlNeighAdd({dev, ip, mac}, netns?): a permanent entry (replaces an existing one).
Napi::Value NlNeighAdd(const Napi::CallbackInfo &info)
{
	const char *op = "nlNeighAdd";
	Napi::Env env = info.Env();
	Napi::Object o = ArgObject(info, 0, op);
	std::string dev = OptString(env, o, "dev", op, true);
	std::string ips = OptString(env, o, "ip", op, true);
	std::string macs = OptString(env, o, "mac", op, true);
	std::string netns = Netns(info, 1, op);
	Ip ip;
	uint8_t mac[6];
	if (!ParseIp(ips, &ip))
		Throw(env, op, ips, EINVAL, "ip must be an address");
	if (!ParseMac(macs, mac))
		Throw(env, op, macs, EINVAL, "mac must be aa:bb:cc:dd:ee:ff");
	return Run(env, netns, op, [=](NlSock &s) -> Failure {
		Failure f;
		int idx = Index(dev, &f, op);
		if (!idx)
			return f;
		NlMsg m(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
		auto *nd = m.Fixed<struct ndmsg>();
		nd->ndm_family = ip.family;
		nd->ndm_ifindex = idx;
		nd->ndm_state = NUD_PERMANENT;
		m.Attr(NDA_DST, ip.bytes, ip.len());
		m.Attr(NDA_LLADDR, mac, 6);
		if (int err = s.Talk(m))
			return {"RTM_NEWNEIGH", ips + " dev " + dev, err};
		return {};
	});
}

/// nlNeighList(netns?) -> permanent IPv4/IPv6 entries [{ifindex, ip, mac, permanent}]
Napi::Value NlNeighList(const Napi::CallbackInfo &info)
{
	const char *op = "nlNeighList";
	Napi::Env env = info.Env();
	std::string netns = Netns(info, 0, op);
	struct Row {
		int ifindex;
		std::string ip, mac;
		bool permanent;
	};
	auto rows = std::make_shared<std::vector<Row>>();
	return Run(env, netns, op, [=](NlSock &s) -> Failure {
		NlMsg m(RTM_GETNEIGH, NLM_F_DUMP);
		m.Fixed<struct ndmsg>()->ndm_family = AF_UNSPEC;
		int err = s.Talk(m, [&](struct nlmsghdr *h) {
			if (h->nlmsg_type != RTM_NEWNEIGH)
				return;
			auto *nd = reinterpret_cast<struct ndmsg *>(NLMSG_DATA(h));
			if (nd->ndm_family != AF_INET && nd->ndm_family != AF_INET6)
				return;
			Row r{nd->ndm_ifindex, "", "", (nd->ndm_state & NUD_PERMANENT) != 0};
			int len = RTM_PAYLOAD(h);
			for (auto *a = (struct rtattr *)((char *)nd + NLMSG_ALIGN(sizeof(*nd))); RTA_OK(a, len);
			     a = RTA_NEXT(a, len)) {
				if (a->rta_type == NDA_DST)
					r.ip = IpString(nd->ndm_family, RTA_DATA(a));
				else if (a->rta_type == NDA_LLADDR)
					r.mac = MacString((const uint8_t *)RTA_DATA(a), RTA_PAYLOAD(a));
			}
			rows->push_back(r);
		});
		if (err)
			return {"RTM_GETNEIGH", "dump", err};
		return {};
	}, [rows](Napi::Env env) -> Napi::Value {
	Napi::Array out = Napi::Array::New(env, rows->size());
	for (size_t i = 0; i < rows->size(); i++) {
		Napi::Object o = Napi::Object::New(env);
		o.Set("ifindex", (*rows)[i].ifindex);
		o.Set("ip", (*rows)[i].ip);
		o.Set("mac", (*rows)[i].mac);
		o.Set("permanent", (*rows)[i].permanent);
		out.Set((uint32_t)i, o);
	}
	return out;
	});
}

// ---- sysctls ----------------------------------------------------------------------

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
	std::string netns = Netns(info, 2, op);
	std::string path;
	if (!SysctlPath(key, &path))
		Throw(env, op, key, EINVAL, "only net.* sysctls");
	return Queue(env, [=]() -> Failure {
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
	std::string netns = Netns(info, 1, op);
	std::string path;
	auto out = std::make_shared<std::string>();
	if (!SysctlPath(key, &path))
		Throw(env, op, key, EINVAL, "only net.* sysctls");
	return Queue(
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
