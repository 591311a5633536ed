// Links over rtnetlink: veth pairs (the peer born in the pod's netns), link
// attributes (up, MTU, MAC, name, namespace), deletion and dumps.
#include "netlink.h"

#include "netlink_socket.h"
#include "netns.h"

#include <fcntl.h>
#include <net/if.h> // before the uapi headers (glibc/uapi if.h compat)
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/veth.h>

#include <cerrno>
#include <memory>
#include <vector>

namespace weir {

namespace {

struct LinkRow {
	int ifindex = 0;
	std::string name, kind, mac;
	uint32_t mtu = 0, flags = 0, operstate = 0;
	int link = 0;	      // IFLA_LINK: the peer's ifindex for a veth
	int linkNetnsid = -1; // IFLA_LINK_NETNSID
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
	std::string netns = NetnsArg(info, 1, op);
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
	return NlRun(env, netns, op, [=](NlSock &s) -> Failure {
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
	std::string netns = NetnsArg(info, 2, op);
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
	return NlRun(env, netns, op, [=](NlSock &s) -> Failure {
		Failure f;
		int idx = NlIfIndex(name, &f, op);
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
	std::string netns = NetnsArg(info, 1, op);
	auto deleted = std::make_shared<bool>(false);
	return NlRun(
		env, netns, op,
		[=](NlSock &s) -> Failure {
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
		},
		[deleted](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, *deleted); });
}

/// nlLinkList(netns?) -> links
Napi::Value NlLinkList(const Napi::CallbackInfo &info)
{
	return NlList<struct ifinfomsg, LinkRow>(
		info, "nlLinkList", RTM_GETLINK, "RTM_GETLINK", RTM_NEWLINK,
		[](struct nlmsghdr *h, std::vector<LinkRow> *rows) {
			LinkRow r;
			ParseLink(h, &r);
			rows->push_back(r);
		},
		LinkJs);
}

} // namespace weir
