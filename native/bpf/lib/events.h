/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* events: drop and policy-verdict records for the agent, and per-reason counters. */
#ifndef WEIR_EVENTS_H
#define WEIR_EVENTS_H

#include "common.h"
#include "parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct weir_metrics_value);
	__uint(max_entries, WEIR_METRICS_ENTRIES + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_METRICS SEC(".maps");

static __always_inline void weir_metrics_add(__u32 idx, __u32 len)
{
	struct weir_metrics_value *m = bpf_map_lookup_elem(&WEIR_MAP_METRICS, &idx);

	if (m) {
		m->packets++;
		m->bytes += len;
	}
}

/**
 * weir_count() - count a packet under its reason and direction.
 * @reason: WEIR_OK or a WEIR_DROP_* code; out-of-range codes count as invalid.
 */
static __always_inline void weir_count(int reason, __u8 dir, __u32 len)
{
	__u32 r = (__u32)(-reason);

	if (r >= WEIR_REASON_MAX)
		r = (__u32)(-WEIR_DROP_INVALID_PACKET);
	weir_metrics_add((r << 1) | (dir & 1), len);
}

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
 * weir_emit() - put one event on the ring buffer.
 * A full ring buffer loses the event, never the packet; the loss is counted at
 * WEIR_METRICS_EVENTS_LOST so the agent can report it.
 */
static __always_inline void weir_emit(struct __sk_buff *skb, const struct weir_pkt *p, const struct weir_verdict *v)
{
	struct weir_event *ev = bpf_ringbuf_reserve(&WEIR_MAP_EVENTS, sizeof(*ev), 0);

	if (!ev) {
		weir_metrics_add(WEIR_METRICS_EVENTS_LOST, 0);
		return;
	}
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
