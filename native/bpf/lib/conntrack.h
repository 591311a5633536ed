/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * conntrack: connections already admitted, so that established and reply packets
 * skip the policy lookups.
 *
 * An entry is keyed by the tuple of the connection's first packet and the scope of
 * the hook that admitted it (WEIR_DIR_EGRESS: the pod opened it; WEIR_DIR_INGRESS:
 * it was delivered to the pod). A packet is a reply when the reversed tuple exists
 * in the other scope of the same pod, e.g. a pod's answer to a connection delivered
 * to it. Entries expire by deadline; expired ones are ignored here and reaped by the
 * agent's GC (lifetimes are load-time configuration). Time is the coarse monotonic
 * clock (one tick of resolution, no clock-source read on the per-packet path).
 *
 * An entry remembers the host veth of the pod it belongs to: a hit on another
 * interface (a spoofed tuple, or an address reused by a new pod) is not trusted and
 * the packet is policed as new.
 */
#ifndef WEIR_CONNTRACK_H
#define WEIR_CONNTRACK_H

#include "common.h"
#include "pod_config.h"
#include "parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct weir_ct4_key);
	__type(value, struct weir_ct_entry);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_CT4 SEC(".maps");

#define WEIR_CT_NEW	    0
#define WEIR_CT_ESTABLISHED 1
#define WEIR_CT_REPLY	    2
#define WEIR_CT_RELATED	    3

static __always_inline __u8 weir_ct_other_scope(__u8 scope)
{
	return scope == WEIR_DIR_EGRESS ? WEIR_DIR_INGRESS : WEIR_DIR_EGRESS;
}

static __always_inline struct weir_ct_entry *weir_ct_get(__u32 saddr, __u32 daddr, __u16 sport, __u16 dport, __u8 proto,
							 __u8 scope, __u64 now)
{
	struct weir_ct4_key key = {
		.saddr = saddr,
		.daddr = daddr,
		.sport = sport,
		.dport = dport,
		.protocol = proto,
		.scope = scope,
	};
	struct weir_ct_entry *e = bpf_map_lookup_elem(&WEIR_MAP_CT4, &key);

	if (e && e->expires_ns <= now)
		return NULL;
	return e;
}

/* Lifetime of a TCP entry given what has been seen so far, in seconds. */
static __always_inline __u32 weir_ct_tcp_lifetime(__u16 flags)
{
	if (flags & WEIR_CT_F_RST)
		return weir_cfg_ct_close_lifetime;
	if ((flags & (WEIR_CT_F_FIN_FWD | WEIR_CT_F_FIN_REV)) == (WEIR_CT_F_FIN_FWD | WEIR_CT_F_FIN_REV))
		return weir_cfg_ct_close_lifetime;
	if (!(flags & WEIR_CT_F_SEEN_REPLY))
		return weir_cfg_ct_syn_lifetime;
	return weir_cfg_ct_tcp_lifetime;
}

/**
 * weir_ct_account() - record a packet of a tracked connection.
 * @reply: the packet travels opposite to the connection's first packet.
 *
 * Counters are plain adds: a lost increment under concurrency is acceptable, a
 * locked instruction per packet is not. The deadline is rewritten only when it moves
 * by more than a second, to keep the entry's cache line quiet on busy flows.
 */
static __always_inline void weir_ct_account(struct weir_ct_entry *e, const struct weir_pkt *p, int reply, __u64 now)
{
	__u16 flags = e->flags;
	__u64 deadline;
	__u32 life;

	e->packets++;
	e->bytes += p->len;
	if (reply)
		flags |= WEIR_CT_F_SEEN_REPLY;
	if (p->protocol == IPPROTO_TCP) {
		if (p->tcp_flags & WEIR_TCP_RST)
			flags |= WEIR_CT_F_RST;
		if (p->tcp_flags & WEIR_TCP_FIN)
			flags |= reply ? WEIR_CT_F_FIN_REV : WEIR_CT_F_FIN_FWD;
		if ((p->tcp_flags & (WEIR_TCP_SYN | WEIR_TCP_ACK)) == WEIR_TCP_SYN &&
		    (flags & (WEIR_CT_F_RST | WEIR_CT_F_FIN_FWD | WEIR_CT_F_FIN_REV))) {
			/*
			 * A new SYN on a closed tuple: the port was reused. A connection
			 * of the ztunnel stays one (capture fails closed, never open).
			 */
			flags = WEIR_CT_F_SYN | (flags & WEIR_CT_F_PROXY);
		}
		life = weir_ct_tcp_lifetime(flags);
		if ((e->tcp_flags_seen | p->tcp_flags) != e->tcp_flags_seen)
			e->tcp_flags_seen |= p->tcp_flags;
	} else {
		life = weir_cfg_ct_other_lifetime;
	}
	if (flags != e->flags)
		e->flags = flags;
	deadline = now + (__u64)life * NSEC_PER_SEC;
	if (deadline > e->expires_ns + NSEC_PER_SEC || deadline + NSEC_PER_SEC < e->expires_ns ||
	    flags & (WEIR_CT_F_RST | WEIR_CT_F_FIN_FWD | WEIR_CT_F_FIN_REV))
		e->expires_ns = deadline;
}

/**
 * weir_ct_lookup4() - classify a packet against the table.
 * @scope: WEIR_DIR_* of the calling hook.
 * @entry: set to the connection's entry (NULL for WEIR_CT_NEW and WEIR_CT_RELATED).
 * Return: WEIR_CT_NEW, WEIR_CT_ESTABLISHED, WEIR_CT_REPLY or WEIR_CT_RELATED (an
 * ICMP error about a tracked connection).
 */
static __always_inline int weir_ct_lookup4(const struct weir_pkt *p, __u8 scope, __u64 now,
					   struct weir_ct_entry **entry)
{
	struct weir_ct_entry *e;

	*entry = NULL;
	e = weir_ct_get(p->saddr, p->daddr, p->sport, p->dport, p->protocol, scope, now);
	if (e) {
		*entry = e;
		return WEIR_CT_ESTABLISHED;
	}
	e = weir_ct_get(p->daddr, p->saddr, p->dport, p->sport, p->protocol, weir_ct_other_scope(scope), now);
	if (e) {
		*entry = e;
		return WEIR_CT_REPLY;
	}
	if (p->is_icmp_error) {
		/* The error is about a packet the other side of this hook sent... */
		if (weir_ct_get(p->inner.saddr, p->inner.daddr, p->inner.sport, p->inner.dport, p->inner.protocol,
				weir_ct_other_scope(scope), now))
			return WEIR_CT_RELATED;
		/* ...or about a reply of a connection this side admitted. */
		if (weir_ct_get(p->inner.daddr, p->inner.saddr, p->inner.dport, p->inner.sport, p->inner.protocol,
				scope, now))
			return WEIR_CT_RELATED;
	}
	return WEIR_CT_NEW;
}

/**
 * weir_ct_create4() - admit a new connection.
 * @extra_flags: WEIR_CT_F_PROXY for a connection of the ztunnel, else 0.
 * Return: WEIR_OK, or WEIR_DROP_CT_CREATE_FAILED when the table refused the entry.
 */
static __always_inline int weir_ct_create4(const struct weir_pkt *p, __u8 scope, __u64 now, __u32 rule_id, __u32 ep_id,
					   __u32 peer_identity, __u32 ifindex, __u16 extra_flags)
{
	struct weir_ct4_key key = {
		.saddr = p->saddr,
		.daddr = p->daddr,
		.sport = p->sport,
		.dport = p->dport,
		.protocol = p->protocol,
		.scope = scope,
	};
	struct weir_ct_entry e = {
		.packets = 1,
		.bytes = p->len,
		.rule_id = rule_id,
		.ep_id = ep_id,
		.peer_identity = peer_identity,
		.ifindex = ifindex,
		.flags = extra_flags,
	};
	__u32 life = weir_cfg_ct_other_lifetime;

	if (p->protocol == IPPROTO_TCP) {
		e.tcp_flags_seen = p->tcp_flags;
		if (p->tcp_flags & WEIR_TCP_SYN)
			e.flags |= WEIR_CT_F_SYN;
		if (p->tcp_flags & WEIR_TCP_RST)
			e.flags |= WEIR_CT_F_RST;
		life = weir_ct_tcp_lifetime(e.flags);
	} else if (p->protocol == IPPROTO_ICMP) {
		e.flags |= WEIR_CT_F_ICMP;
	}
	e.expires_ns = now + (__u64)life * NSEC_PER_SEC;
	if (bpf_map_update_elem(&WEIR_MAP_CT4, &key, &e, BPF_ANY))
		return WEIR_DROP_CT_CREATE_FAILED;
	return WEIR_OK;
}

#endif /* WEIR_CONNTRACK_H */
