// Neighbour (ARP/NDP) entries over rtnetlink: permanent entries and dumps.
#include "netlink.h"

#include "netlink_socket.h"
#include "netns.h"

#include <linux/neighbour.h>

#include <cerrno>
#include <memory>
#include <vector>

namespace weir {

/// nlNeighAdd({dev, ip, mac}, netns?): a permanent entry (replaces an existing one).
Napi::Value NlNeighAdd(const Napi::CallbackInfo &info)
{
	const char *op = "nlNeighAdd";
	Napi::Env env = info.Env();
	Napi::Object o = ArgObject(info, 0, op);
	std::string dev = OptString(env, o, "dev", op, true);
	std::string ips = OptString(env, o, "ip", op, true);
	std::string macs = OptString(env, o, "mac", op, true);
	std::string netns = NetnsArg(info, 1, op);
	Ip ip;
	uint8_t mac[6];
	if (!ParseIp(ips, &ip))
		Throw(env, op, ips, EINVAL, "ip must be an address");
	if (!ParseMac(macs, mac))
		Throw(env, op, macs, EINVAL, "mac must be aa:bb:cc:dd:ee:ff");
	return NlRun(env, netns, op, [=](NlSock &s) -> Failure {
		Failure f;
		int idx = NlIfIndex(dev, &f, op);
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

/// nlNeighList(netns?) -> IPv4/IPv6 entries [{ifindex, ip, mac, permanent}]
Napi::Value NlNeighList(const Napi::CallbackInfo &info)
{
	struct Row {
		int ifindex;
		std::string ip, mac;
		bool permanent;
	};
	return NlList<struct ndmsg, Row>(
		info, "nlNeighList", RTM_GETNEIGH, "RTM_GETNEIGH", RTM_NEWNEIGH,
		[](struct nlmsghdr *h, std::vector<Row> *rows) {
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
		},
		[](Napi::Env env, const Row &r) {
			Napi::Object o = Napi::Object::New(env);
			o.Set("ifindex", r.ifindex);
			o.Set("ip", r.ip);
			o.Set("mac", r.mac);
			o.Set("permanent", r.permanent);
			return o;
		});
}

} // namespace weir
