/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* events: drop and policy-verdict records for the agent (counters: metrics.h). */
#ifndef WEIR_EVENTS_H
#define WEIR_EVENTS_H

#include "common.h"
#include "event_ring.h"
#include "parse.h"

/**
 * struct weir_verdict - what the hook decided about one packet, for its event.
 */
struct weir_verdict {
	__u8 type;
	__u8 dir;
	__u8 verdict;
	__u8 match;
	__u8 is_reply;
	int reason;
	__u32 ep_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 rule_id;
};

/**
 * weir_emit() - put one event on the ring buffer (event_ring.h).
 * A full ring buffer loses the event, never the packet; the loss is counted at
 * WEIR_METRICS_EVENTS_LOST so the agent can report it.
 */
static __always_inline void weir_emit(struct __sk_buff *skb, const struct weir_pkt *p, const struct weir_verdict *v)
{
	struct weir_event *ev = weir_ring_reserve(sizeof(*ev));

	if (!ev)
		return;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->type = v->type;
	ev->direction = v->dir;
	ev->verdict = v->verdict;
	ev->family = p->saddr || p->daddr ? WEIR_FAMILY_IPV4 : 0;
	ev->reason = (__s16)v->reason;
	ev->protocol = p->protocol;
	ev->tcp_flags = p->tcp_flags;
	ev->ep_id = v->ep_id;
	ev->src_identity = v->src_identity;
	ev->dst_identity = v->dst_identity;
	ev->rule_id = v->rule_id;
	ev->ifindex = skb->ifindex;
	ev->pkt_len = skb->len;
	ev->saddr[0] = p->saddr;
	ev->saddr[1] = 0;
	ev->saddr[2] = 0;
	ev->saddr[3] = 0;
	ev->daddr[0] = p->daddr;
	ev->daddr[1] = 0;
	ev->daddr[2] = 0;
	ev->daddr[3] = 0;
	ev->sport = bpf_ntohs(p->sport);
	ev->dport = bpf_ntohs(p->dport);
	ev->is_reply = v->is_reply;
	ev->match_type = v->match;
	ev->icmp_type = p->icmp_type;
	ev->icmp_code = p->icmp_code;
	bpf_ringbuf_submit(ev, 0);
}

#endif /* WEIR_EVENTS_H */
