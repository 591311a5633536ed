// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tc programs for the host side of a pod's veth.
 *
 * weir_from_pod runs at the host veth's tc ingress: it sees what the pod sends and
 * enforces the pod's egress policy. weir_to_pod runs at tc egress: it sees what is
 * delivered to the pod and enforces its ingress policy. Both share weir_handle(),
 * which the compiler specialises for each direction.
 *
 * A meshed pod's TCP to a meshed pod (an ipcache entry flagged WEIR_IPCACHE_F_MESHED)
 * is captured after its policy allowed it: weir_from_pod hands it to the node
 * ztunnel's socket (lib/capture.h), and the conntrack entry remembers that, so every
 * later packet of the connection goes the same way, or is dropped if the ztunnel is
 * gone. Its TCP to anything else is policed like any pod's. Why in tc with
 * bpf_sk_assign, not Istio's in-pod sockets, and why only meshed destinations:
 * docs/ztunnel.md.
 *
 * A meshed pod whose PeerAuthentication is STRICT receives new TCP connections only
 * from the ztunnel (its socket mark) or the node: weir_to_pod checks that after its
 * NetworkPolicy admitted the connection (lib/mtls.h).
 */
#include "lib/common.h"
#include "lib/pod_config.h"
#include "lib/parse.h"
#include "lib/ipcache.h"
#include "lib/endpoints.h"
#include "lib/policy.h"
#include "lib/conntrack.h"
#include "lib/events.h"
#include "lib/capture.h"
#include "lib/mtls.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int weir_has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

/**
 * weir_handle() - police one packet crossing a pod's veth.
 * @dir: WEIR_DIR_EGRESS for packets from the pod, WEIR_DIR_INGRESS for packets to it.
 * Return: TC_ACT_OK to pass, TC_ACT_SHOT to drop (always after a drop event).
 */
static __always_inline int weir_handle(struct __sk_buff *skb, const __u8 dir)
{
	struct weir_verdict v;
	struct weir_pkt p;
	struct weir_endpoint_info *ep;
	struct weir_ct_entry *ct;
	__u32 peer, isolated;
	__u32 dst_flags = 0; /* WEIR_IPCACHE_F_* of the destination (egress only) */
	__u16 ct_flags = 0;
	__u64 now;
	__u16 ethertype;
	int ret, res;

	/* Events read the addresses even when parsing stopped early. */
	p.saddr = 0;
	p.daddr = 0;
	p.protocol = 0;
	p.tcp_flags = 0;
	p.sport = 0;
	p.dport = 0;
	p.icmp_type = 0;
	p.icmp_code = 0;
	p.len = 0;
	ret = weir_parse_l3(skb, &ethertype);
	if (ret == WEIR_L3_ARP)
		return TC_ACT_OK;
	if (ret == WEIR_L3_OTHER) {
		ret = WEIR_DROP_UNSUPPORTED_L3;
		goto drop_early;
	}
	if (ret < 0)
		goto drop_early;
	ret = weir_parse_ipv4(skb, &p);
	if (ret < 0)
		goto drop_early;

	/*
	 * Fast path: a packet of a connection this pod's interface already admitted
	 * needs neither the endpoint nor the policy.
	 */
	now = bpf_ktime_get_coarse_ns();
	res = weir_ct_lookup4(&p, dir, now, &ct);
	if ((res == WEIR_CT_ESTABLISHED || res == WEIR_CT_REPLY) && ct->ifindex == skb->ifindex) {
		if (dir == WEIR_DIR_EGRESS && (ct->flags & WEIR_CT_F_PROXY) && p.protocol == IPPROTO_TCP) {
			ret = weir_capture(skb, &p, weir_tcp_is_syn(&p));
			if (ret < 0) {
				__builtin_memset(&v, 0, sizeof(v));
				v.type = WEIR_EVENT_DROP;
				v.dir = dir;
				v.verdict = WEIR_VERDICT_DROPPED;
				v.ep_id = ct->ep_id;
				v.is_reply = res == WEIR_CT_REPLY;
				goto drop_err;
			}
		}
		weir_ct_account(ct, &p, res == WEIR_CT_REPLY, now);
		weir_count(WEIR_OK, dir, p.len);
		return TC_ACT_OK;
	}

	/* Off the fast path: the verdict record for events. */
	__builtin_memset(&v, 0, sizeof(v));
	v.type = WEIR_EVENT_DROP;
	v.dir = dir;
	v.verdict = WEIR_VERDICT_DROPPED;

	if (dir == WEIR_DIR_EGRESS) {
		ep = weir_endpoint_lookup4(p.saddr);
		if (!ep) {
			ret = WEIR_DROP_NO_ENDPOINT;
			goto drop_err;
		}
		v.ep_id = ep->ep_id;
		v.src_identity = ep->identity;
		if (ep->ifindex != skb->ifindex) {
			ret = WEIR_DROP_INVALID_SOURCE;
			goto drop_err;
		}
	} else {
		ep = weir_endpoint_lookup4(p.daddr);
		if (!ep) {
			ret = WEIR_DROP_NO_ENDPOINT;
			goto drop_err;
		}
		v.ep_id = ep->ep_id;
		v.dst_identity = ep->identity;
		if (ep->ifindex != skb->ifindex) {
			ret = WEIR_DROP_WRONG_INTERFACE;
			goto drop_err;
		}
	}

	if (res == WEIR_CT_RELATED) {
		weir_count(WEIR_OK, dir, p.len);
		return TC_ACT_OK;
	}

	/* A new connection (or a tuple first seen on another interface): the policy decides. */
	if (dir == WEIR_DIR_EGRESS) {
		v.dst_identity = weir_ipcache_lookup4(p.daddr, &dst_flags);
		peer = v.dst_identity;
		isolated = ep->flags & WEIR_EP_EGRESS_ISOLATED;
	} else {
		v.src_identity = weir_ipcache_identity4(p.saddr);
		peer = v.src_identity;
		isolated = ep->flags & WEIR_EP_INGRESS_ISOLATED;
	}
	if (!isolated) {
		v.match = WEIR_MATCH_NOT_ISOLATED;
	} else if (dir == WEIR_DIR_INGRESS && peer == WEIR_ID_HOST && weir_cfg_allow_host) {
		v.match = WEIR_MATCH_HOST;
	} else {
		v.rule_id = weir_policy_lookup(ep->ep_id, peer, dir, p.protocol,
					       weir_has_ports(p.protocol) ? p.dport : 0, &v.match);
		if (!v.rule_id) {
			if (!weir_cfg_audit) {
				ret = WEIR_DROP_POLICY_DENIED;
				goto drop_err;
			}
			v.verdict = WEIR_VERDICT_AUDIT;
		}
	}

	/*
	 * Policy first, then capture: what the pod may not open never reaches the
	 * ztunnel. Only a meshed destination is captured, so the ztunnel being down
	 * never stops a meshed pod's TCP to anything else. A SYN without a ztunnel
	 * listener leaves no conntrack entry behind.
	 */
	if (dir == WEIR_DIR_EGRESS && weir_capture_eligible(skb, &p, ep->flags, dst_flags)) {
		ret = weir_capture(skb, &p, weir_tcp_is_syn(&p));
		if (ret == WEIR_OK)
			ct_flags = WEIR_CT_F_PROXY;
		else if (weir_tcp_is_syn(&p))
			goto drop_err;
		/*
		 * Else a packet of a connection the ztunnel does not own (opened before the
		 * pod or its destination was meshed): as before.
		 */
	} else if (dir == WEIR_DIR_INGRESS && p.protocol == IPPROTO_TCP) {
		/* The ztunnel connects to the pod: the pod's replies must go back to its socket. */
		if (weir_from_ztunnel(skb))
			ct_flags = WEIR_CT_F_PROXY;
		/*
		 * NetworkPolicy first, then PeerAuthentication: a connection both refuse is
		 * POLICY_DENIED, since meshing its client would not let it in. STRICT is not
		 * NetworkPolicy, so audit mode does not lift it.
		 */
		ret = weir_mtls_check(skb, &p, ep, peer);
		if (ret < 0) {
			v.verdict = WEIR_VERDICT_DROPPED;
			goto drop_err;
		}
	}

	ret = weir_ct_create4(&p, dir, now, v.rule_id, ep->ep_id, peer, skb->ifindex, ct_flags);
	if (ret < 0)
		goto drop_err;
	if (weir_cfg_verdict_events) {
		v.type = WEIR_EVENT_POLICY_VERDICT;
		if (v.verdict != WEIR_VERDICT_AUDIT)
			v.verdict = WEIR_VERDICT_FORWARDED;
		v.reason = WEIR_OK;
		weir_emit(skb, &p, &v);
	}
	weir_count(WEIR_OK, dir, p.len);
	return TC_ACT_OK;

drop_early:
	__builtin_memset(&v, 0, sizeof(v));
	v.type = WEIR_EVENT_DROP;
	v.dir = dir;
	v.verdict = WEIR_VERDICT_DROPPED;
drop_err:
	v.reason = ret;
	weir_emit(skb, &p, &v);
	weir_count(ret, dir, skb->len);
	return TC_ACT_SHOT;
}

SEC("tc")
int weir_from_pod(struct __sk_buff *skb)
{
	return weir_handle(skb, WEIR_DIR_EGRESS);
}

SEC("tc")
int weir_to_pod(struct __sk_buff *skb)
{
	return weir_handle(skb, WEIR_DIR_INGRESS);
}
