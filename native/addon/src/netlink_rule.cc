// Policy-routing rules over rtnetlink (`ip rule`): add, delete (idempotent), dump.
// Only what the capture needs: IPv4 `fwmark M/MASK lookup TABLE` at a priority.
#include "netlink.h"

#include "netlink_socket.h"
#include "netns.h"

#include <linux/fib_rules.h>

#include <cerrno>
#include <memory>
#include <vector>

namespace weir {

namespace {

struct RuleSpec {
	uint32_t priority = 0;
	uint32_t fwmark = 0;
	uint32_t fwmask = 0;
	uint32_t table = 0;
};

RuleSpec ArgRule(const Napi::CallbackInfo &info, const char *op)
{
	Napi::Env env = info.Env();
	Napi::Object o = ArgObject(info, 0, op);
	RuleSpec r;
	r.priority = (uint32_t)OptInt(env, o, "priority", op, 0);
	r.fwmark = (uint32_t)OptInt(env, o, "fwmark", op, 0);
	r.fwmask = (uint32_t)OptInt(env, o, "fwmask", op, 0xffffffff);
	r.table = (uint32_t)OptInt(env, o, "table", op, 0);
	if (!r.priority || !r.fwmark || !r.table)
		Throw(env, op, "", EINVAL, "priority, fwmark and table are required (non-zero)");
	return r;
}

std::string RuleText(const RuleSpec &r)
{
	char buf[96];
	snprintf(buf, sizeof(buf), "pref %u fwmark 0x%x/0x%x lookup %u", r.priority, r.fwmark, r.fwmask, r.table);
	return buf;
}

Napi::Value RuleChange(const Napi::CallbackInfo &info, bool add)
{
	const char *op = add ? "nlRuleAdd" : "nlRuleDel";
	Napi::Env env = info.Env();
	RuleSpec r = ArgRule(info, op);
	std::string netns = NetnsArg(info, 1, op);
	auto changed = std::make_shared<bool>(false);
	return NlRun(
		env, netns, op,
		[=](NlSock &s) -> Failure {
			NlMsg m(add ? RTM_NEWRULE : RTM_DELRULE, add ? (NLM_F_CREATE | NLM_F_EXCL) : 0);
			auto *h = m.Fixed<struct fib_rule_hdr>();
			h->family = AF_INET;
			h->action = FR_ACT_TO_TBL;
			h->table = r.table < 256 ? r.table : RT_TABLE_UNSPEC;
			m.U32(FRA_TABLE, r.table);
			m.U32(FRA_PRIORITY, r.priority);
			m.U32(FRA_FWMARK, r.fwmark);
			m.U32(FRA_FWMASK, r.fwmask);
			int err = s.Talk(m);
			if (!add && err == ENOENT)
				return {};
			if (add && err == EEXIST)
				return {};
			if (err)
				return {add ? "RTM_NEWRULE" : "RTM_DELRULE", RuleText(r), err};
			*changed = true;
			return {};
		},
		[changed](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, *changed); });
}

} // namespace

/// nlRuleAdd({priority, fwmark, fwmask?, table}, netns?) -> false when the same rule was there
Napi::Value NlRuleAdd(const Napi::CallbackInfo &info)
{
	return RuleChange(info, true);
}

/// nlRuleDel({priority, fwmark, fwmask?, table}, netns?) -> false when there was no such rule
Napi::Value NlRuleDel(const Napi::CallbackInfo &info)
{
	return RuleChange(info, false);
}

/// nlRuleList(netns?) -> IPv4 rules [{priority, fwmark, fwmask, table, action}]
Napi::Value NlRuleList(const Napi::CallbackInfo &info)
{
	struct Row {
		uint32_t priority, fwmark, fwmask, table;
		int action;
	};
	return NlList<struct fib_rule_hdr, Row>(
		info, "nlRuleList", RTM_GETRULE, "RTM_GETRULE", RTM_NEWRULE,
		[](struct nlmsghdr *h, std::vector<Row> *rows) {
			auto *fr = reinterpret_cast<struct fib_rule_hdr *>(NLMSG_DATA(h));
			if (fr->family != AF_INET)
				return;
			Row r{0, 0, 0, fr->table, fr->action};
			int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*fr));
			for (auto *a = (struct rtattr *)((char *)fr + NLMSG_ALIGN(sizeof(*fr))); RTA_OK(a, len);
			     a = RTA_NEXT(a, len)) {
				uint32_t v = RTA_PAYLOAD(a) >= 4 ? *(uint32_t *)RTA_DATA(a) : 0;
				if (a->rta_type == FRA_PRIORITY)
					r.priority = v;
				else if (a->rta_type == FRA_FWMARK)
					r.fwmark = v;
				else if (a->rta_type == FRA_FWMASK)
					r.fwmask = v;
				else if (a->rta_type == FRA_TABLE)
					r.table = v;
			}
			rows->push_back(r);
		},
		[](Napi::Env env, const Row &r) {
			Napi::Object o = Napi::Object::New(env);
			o.Set("priority", r.priority);
			o.Set("fwmark", r.fwmark);
			o.Set("fwmask", r.fwmask);
			o.Set("table", r.table);
			o.Set("action", r.action == FR_ACT_TO_TBL ? "lookup" : "other");
			return o;
		});
}

} // namespace weir
