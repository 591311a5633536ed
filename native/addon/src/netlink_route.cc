// Routes over rtnetlink: add, delete (idempotent), dump of one table (main by default).
// A route is unicast, or local (`local default dev lo table T`: the capture table,
// src/kernel/capture.ts).
#include "netlink.h"

#include "netlink_socket.h"
#include "netns.h"

#include <cerrno>
#include <memory>
#include <vector>

namespace weir {

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
	int type = RTN_UNICAST;
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
	std::string type = OptString(env, o, "type", op, false);
	if (type == "local") {
		r.type = RTN_LOCAL;
		if (scope.empty())
			r.scope = RT_SCOPE_HOST;
	} else if (!type.empty() && type != "unicast") {
		Throw(env, op, type, EINVAL, "type must be 'unicast' or 'local'");
	}
	return r;
}

Napi::Value RouteChange(const Napi::CallbackInfo &info, bool add)
{
	const char *op = add ? "nlRouteAdd" : "nlRouteDel";
	Napi::Env env = info.Env();
	RouteSpec r = ArgRoute(info, op);
	std::string netns = NetnsArg(info, 1, op);
	auto changed = std::make_shared<bool>(false);
	return NlRun(
		env, netns, op,
		[=](NlSock &s) -> Failure {
			int idx = 0;
			if (!r.dev.empty()) {
				Failure f;
				idx = NlIfIndex(r.dev, &f, op);
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
			rt->rtm_type = add ? r.type : RTN_UNSPEC;
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
				return {add ? "RTM_NEWROUTE" : "RTM_DELROUTE",
					IpString(r.dst.family, r.dst.bytes) + "/" + std::to_string(r.plen) +
						(r.dev.empty() ? "" : " dev " + r.dev),
					err};
			*changed = true;
			return {};
		},
		[changed](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, *changed); });
}

} // namespace

Napi::Value NlRouteAdd(const Napi::CallbackInfo &info)
{
	return RouteChange(info, true);
}
Napi::Value NlRouteDel(const Napi::CallbackInfo &info)
{
	return RouteChange(info, false);
}

/// nlRouteList(netns?, table?) -> routes of that table (default main) [{family, dst, gateway, ifindex, scope, table, onlink, type}]
Napi::Value NlRouteList(const Napi::CallbackInfo &info)
{
	uint32_t want = ArgU32(info, 1, "nlRouteList", "table", true, RT_TABLE_MAIN);
	struct Row {
		int family, scope;
		uint32_t table;
		std::string dst, gw;
		int oif;
		bool onlink;
		int type;
	};
	return NlList<struct rtmsg, Row>(
		info, "nlRouteList", RTM_GETROUTE, "RTM_GETROUTE", RTM_NEWROUTE,
		[want](struct nlmsghdr *h, std::vector<Row> *rows) {
			auto *rt = reinterpret_cast<struct rtmsg *>(NLMSG_DATA(h));
			if (rt->rtm_family != AF_INET && rt->rtm_family != AF_INET6)
				return;
			Row r{rt->rtm_family == AF_INET ? 4 : 6,    rt->rtm_scope, rt->rtm_table, "", "", 0,
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
			if (r.table != want)
				return;
			r.dst = dst + "/" + std::to_string(rt->rtm_dst_len);
			rows->push_back(r);
		},
		[](Napi::Env env, const Row &r) {
			Napi::Object o = Napi::Object::New(env);
			o.Set("family", r.family);
			o.Set("dst", r.dst);
			if (!r.gw.empty())
				o.Set("gateway", r.gw);
			o.Set("ifindex", r.oif);
			o.Set("scope", r.scope == RT_SCOPE_LINK	  ? "link"
				       : r.scope == RT_SCOPE_HOST ? "host"
								  : "universe");
			o.Set("table", r.table);
			o.Set("onlink", r.onlink);
			o.Set("type", r.type == RTN_LOCAL ? "local" : r.type == RTN_UNICAST ? "unicast" : "other");
			return o;
		});
}

} // namespace weir
