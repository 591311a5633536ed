// Interface addresses over rtnetlink: add, delete (idempotent), dump.
#include "netlink.h"

#include "netlink_socket.h"
#include "netns.h"

#include <linux/if_addr.h>

#include <cerrno>
#include <memory>
#include <vector>

namespace weir {

namespace {

Napi::Value AddrChange(const Napi::CallbackInfo &info, bool add)
{
	const char *op = add ? "nlAddrAdd" : "nlAddrDel";
	Napi::Env env = info.Env();
	std::string dev = ArgString(info, 0, op, "dev");
	std::string cidr = ArgString(info, 1, op, "cidr");
	std::string netns = NetnsArg(info, 2, op);
	Ip ip;
	int plen;
	if (!ParseCidr(cidr, &ip, &plen))
		Throw(env, op, cidr, EINVAL, "not an address/prefix");
	auto changed = std::make_shared<bool>(false);
	return NlRun(
		env, netns, op,
		[=](NlSock &s) -> Failure {
			Failure f;
			int idx = NlIfIndex(dev, &f, op);
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
		},
		[changed](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, *changed); });
}

} // namespace

Napi::Value NlAddrAdd(const Napi::CallbackInfo &info)
{
	return AddrChange(info, true);
}
Napi::Value NlAddrDel(const Napi::CallbackInfo &info)
{
	return AddrChange(info, false);
}

/// nlAddrList(netns?) -> [{ifindex, family, address, prefixLen, scope}]
Napi::Value NlAddrList(const Napi::CallbackInfo &info)
{
	struct Row {
		int ifindex, family, plen, scope;
		std::string addr;
	};
	return NlList<struct ifaddrmsg, Row>(
		info, "nlAddrList", RTM_GETADDR, "RTM_GETADDR", RTM_NEWADDR,
		[](struct nlmsghdr *h, std::vector<Row> *rows) {
			auto *ifa = reinterpret_cast<struct ifaddrmsg *>(NLMSG_DATA(h));
			Row r{(int)ifa->ifa_index, ifa->ifa_family == AF_INET ? 4 : 6, ifa->ifa_prefixlen,
			      ifa->ifa_scope, ""};
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
		},
		[](Napi::Env env, const Row &r) {
			Napi::Object o = Napi::Object::New(env);
			o.Set("ifindex", r.ifindex);
			o.Set("family", r.family);
			o.Set("address", r.addr);
			o.Set("prefixLen", r.plen);
			o.Set("scope", r.scope);
			return o;
		});
}

} // namespace weir
