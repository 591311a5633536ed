/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lb: socket-level load balancing of ClusterIP Services, after Cilium's socket LB.
 *
 * A socket that connects (TCP, connected UDP) or sends (unconnected UDP) to a Service
 * frontend gets a backend's address instead, before any packet exists: the datapath
 * and the policy only ever see pod -> backend traffic, and no per-packet NAT is
 * needed. Replies and getpeername() are mapped back, so the application sees the
 * ClusterIP it asked for (a DNS resolver checks a reply's source).
 *
 * Maps (structs in shared/weir_lb.h):
 *   services   frontend + slot -> master entry (slot 0) or inline backend (1..count)
 *   reverse    socket + backend -> frontend, for recvmsg4 / getpeername4
 *   affinity   client netns + service -> backend, for sessionAffinity: ClientIP
 *   addressed  client netns + backend + protocol -> service, for flows
 *   refused    client netns + frontend -> last refusal event, for its rate limit
 *   sources    client netns -> flags: meshed sources are left untranslated
 *   sock       per-socket storage: the backend an unconnected UDP socket was given
 *
 * A frontend with no backend refuses the connect or send at once with ECONNREFUSED
 * (bpf_set_retval), counts WEIR_DROP_NO_SERVICE_BACKEND in the shared metrics and
 * reports it on the shared events ring (event_ring.h) as a WEIR_EVENT_SOCK_DROP,
 * at most once per client netns and frontend per weir_cfg_lb_refuse_interval_ms.
 *
 * Atomics (cmpxchg, xchg) need clang -mcpu=v3 (the Makefile sets it for this object).
 */
#ifndef WEIR_LIB_LB_H
#define WEIR_LIB_LB_H

#include <linux/errno.h>

#include "common.h"
#include "event_ring.h"
#include "metrics.h"
#include "../shared/weir_lb.h"

/*
 * Load-time configuration (libbpf rodata), set by the agent before load. Map sizes
 * are not here: userspace sets them before load (bpf_map__set_max_entries).
 */
/* Translate UDP (connect4, sendmsg4, recvmsg4, getpeername4 of UDP sockets). */
const volatile __u8 weir_cfg_lb_udp = 1;
/* TCP connects record a reverse entry, so that getpeername() reports the ClusterIP. */
const volatile __u8 weir_cfg_lb_tcp_reverse = 1;
/* Record which Service each translation went through (the addressed map, for flows). */
const volatile __u8 weir_cfg_lb_flow_records = 1;
/*
 * A refused connect (no backend) of a client netns to a frontend is reported on the
 * events ring at most once per this many ms; the refusals in between are counted and
 * their number rides on the next report. 0: no reports, the counter only.
 */
const volatile __u32 weir_cfg_lb_refuse_interval_ms = 1000;

/*
 * Not preallocated: an element replaced or deleted by userspace is freed after an RCU
 * grace period, so a program that has just looked it up reads the old entry whole. A
 * preallocated hash reuses elements at once.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct weir_lb4_key);
	__type(value, struct weir_lb4_service);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_LB4_SERVICES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct weir_lb4_reverse_key);
	__type(value, struct weir_lb4_reverse_value);
	__uint(max_entries, 131072);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_LB4_REVERSE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct weir_lb4_affinity_key);
	__type(value, struct weir_lb4_affinity_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_LB4_AFFINITY SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct weir_lb4_addressed_key);
	__type(value, struct weir_lb4_addressed_value);
	__uint(max_entries, 131072);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_LB4_ADDRESSED SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct weir_lb4_refused_key);
	__type(value, struct weir_lb4_refused_value);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_LB4_REFUSED SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct weir_lb_source);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_LB_SOURCES SEC(".maps");

/**
 * struct weir_lb_sock - the backend an unconnected UDP socket was given (socket
 * local storage, freed with the socket; never read by userspace).
 */
struct weir_lb_sock {
	__u32 address; /* frontend, network order */
	__u16 port;    /* frontend port, network order */
	__u16 service_id;
	__u32 backend_addr;
	__u16 backend_port;
	__u16 backend_slot;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__type(key, int);
	__type(value, struct weir_lb_sock);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_LB_SOCK SEC(".maps");

/* Verdicts of the cgroup sock_addr hooks. */
#define WEIR_SOCK_REJECT 0
#define WEIR_SOCK_ALLOW	 1

/* Outcome of a translation attempt. */
#define WEIR_LB_PASS   0 /* not a frontend, or translated */
#define WEIR_LB_REFUSE 1 /* a frontend with no usable backend */

/**
 * struct weir_lb_backend - a chosen backend and the slot it sits in.
 */
struct weir_lb_backend {
	__u32 addr; /* network order */
	__u16 port; /* network order */
	__u16 slot;
};

/**
 * weir_lb4_slot() - the backend in one slot of a frontend.
 * @fe: the frontend's key (backend_slot is ignored).
 * @svc: the frontend's master entry, as read.
 * Return: 0 with @out filled, or -1 if the slot is outside the count or missing (a
 * shrink deleted it after the master was read). A slot's service id is not checked:
 * a slot written for a new id just before its master (the frontend changed Service)
 * is that frontend's current backend all the same.
 */
static __always_inline int weir_lb4_slot(const struct weir_lb4_key *fe, const struct weir_lb4_service *svc, __u16 slot,
					 struct weir_lb_backend *out)
{
	struct weir_lb4_key key = *fe;
	struct weir_lb4_service *be;

	if (slot == 0 || slot > svc->count)
		return -1;
	key.backend_slot = slot;
	be = bpf_map_lookup_elem(&WEIR_MAP_LB4_SERVICES, &key);
	if (!be || !be->backend_addr)
		return -1;
	out->addr = be->backend_addr;
	out->port = be->backend_port;
	out->slot = slot;
	return 0;
}

struct weir_lb_scan {
	struct weir_lb4_key key;
	__u32 addr;
	__u16 port;
	__u16 found;
};

/* bpf_loop() step: is the backend in slot index + 1? */
static long weir_lb4_scan_slot(__u32 index, void *data)
{
	struct weir_lb_scan *s = data;
	struct weir_lb4_service *be;

	s->key.backend_slot = (__u16)(index + 1);
	be = bpf_map_lookup_elem(&WEIR_MAP_LB4_SERVICES, &s->key);
	if (be && be->backend_addr == s->addr && be->backend_port == s->port) {
		s->found = (__u16)(index + 1);
		return 1;
	}
	return 0;
}

/**
 * weir_lb4_find() - whether a backend is still one of a frontend's.
 * @hint: the slot it was in; checked first, then every slot (the Service's backends
 * were rewritten in another order).
 * Return: 0 with @out filled, or -1 if the frontend no longer has that backend.
 */
static __always_inline int weir_lb4_find(const struct weir_lb4_key *fe, const struct weir_lb4_service *svc, __u32 addr,
					 __u16 port, __u16 hint, struct weir_lb_backend *out)
{
	struct weir_lb_scan s = {
		.key = *fe,
		.addr = addr,
		.port = port,
	};

	if (weir_lb4_slot(fe, svc, hint, out) == 0 && out->addr == addr && out->port == port)
		return 0;
	bpf_loop(svc->count, weir_lb4_scan_slot, &s, 0);
	if (!s.found)
		return -1;
	out->addr = addr;
	out->port = port;
	out->slot = s.found;
	return 0;
}

/**
 * weir_lb4_select() - choose a backend for a new destination of a client socket.
 * With sessionAffinity, the backend this client's network namespace was last given
 * for the service, while that was less than the timeout ago and the backend is still
 * the service's; otherwise a random slot (bpf_get_prandom_u32). A slot deleted by a
 * concurrent shrink falls back to slot 1.
 * Return: 0 with @out filled, or -1 if no backend is there to be had.
 */
static __always_inline int weir_lb4_select(void *ctx, const struct weir_lb4_key *fe, const struct weir_lb4_service *svc,
					   __u64 now, struct weir_lb_backend *out)
{
	struct weir_lb4_affinity_key akey = {};
	struct weir_lb4_affinity_value *a, av;
	int hit = 0;

	if (svc->flags & WEIR_LB_F_AFFINITY) {
		akey.netns_cookie = bpf_get_netns_cookie(ctx);
		akey.service_id = svc->service_id;
		a = bpf_map_lookup_elem(&WEIR_MAP_LB4_AFFINITY, &akey);
		if (a && now - a->last_used_ns < (__u64)svc->affinity_timeout * NSEC_PER_SEC &&
		    weir_lb4_find(fe, svc, a->backend_addr, a->backend_port, a->backend_slot, out) == 0) {
			/* The deadline moves with use; a second's precision is enough for it. */
			if (out->slot == a->backend_slot && now - a->last_used_ns < NSEC_PER_SEC)
				return 0;
			hit = 1;
		}
	}
	if (!hit && weir_lb4_slot(fe, svc, (__u16)(bpf_get_prandom_u32() % svc->count + 1), out) &&
	    weir_lb4_slot(fe, svc, 1, out))
		return -1;
	if (svc->flags & WEIR_LB_F_AFFINITY) {
		av.last_used_ns = now;
		av.backend_addr = out->addr;
		av.backend_port = out->port;
		av.backend_slot = out->slot;
		bpf_map_update_elem(&WEIR_MAP_LB4_AFFINITY, &akey, &av, BPF_ANY);
	}
	return 0;
}

/**
 * weir_lb4_remember() - record a translation for the reverse hooks and for flows.
 * Entries are rewritten only when they change (and the flow record's time at most
 * once a second): a busy UDP socket costs a lookup per send, not an update.
 */
static __always_inline void weir_lb4_remember(void *ctx, const struct weir_lb4_key *fe, __u16 service_id,
					      const struct weir_lb_backend *be, __u64 now)
{
	struct weir_lb4_reverse_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.address = be->addr,
		.port = be->port,
	};
	struct weir_lb4_reverse_value rv = {
		.address = fe->address,
		.port = fe->dport,
		.service_id = service_id,
	};
	struct weir_lb4_addressed_key fk = {};
	struct weir_lb4_addressed_value fv, *f;
	struct weir_lb4_reverse_value *r;

	if (fe->proto == IPPROTO_UDP || weir_cfg_lb_tcp_reverse) {
		r = bpf_map_lookup_elem(&WEIR_MAP_LB4_REVERSE, &rk);
		if (!r || r->address != rv.address || r->port != rv.port || r->service_id != rv.service_id)
			bpf_map_update_elem(&WEIR_MAP_LB4_REVERSE, &rk, &rv, BPF_ANY);
	}
	if (!weir_cfg_lb_flow_records)
		return;
	fk.netns_cookie = bpf_get_netns_cookie(ctx);
	fk.backend_addr = be->addr;
	fk.backend_port = be->port;
	fk.proto = fe->proto;
	f = bpf_map_lookup_elem(&WEIR_MAP_LB4_ADDRESSED, &fk);
	if (f && f->service_id == service_id && f->address == fe->address && f->port == fe->dport &&
	    now - f->last_ns < NSEC_PER_SEC)
		return;
	fv.last_ns = now;
	fv.address = fe->address;
	fv.port = fe->dport;
	fv.service_id = service_id;
	bpf_map_update_elem(&WEIR_MAP_LB4_ADDRESSED, &fk, &fv, BPF_ANY);
}

/**
 * weir_lb_source_meshed() - whether the client's netns is a meshed source.
 * Return: non-zero if userspace marked it WEIR_LB_SRC_MESHED: its ztunnel balances
 * Services, so its sockets keep the ClusterIP they asked for.
 */
static __always_inline int weir_lb_source_meshed(void *ctx)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct weir_lb_source *src = bpf_map_lookup_elem(&WEIR_MAP_LB_SOURCES, &netns);

	return src && (src->flags & WEIR_LB_SRC_MESHED);
}

/**
 * weir_lb4_report_refusal() - put a refusal on the events ring, rate-limited.
 * @fe: the frontend the client asked for.
 *
 * One WEIR_EVENT_SOCK_DROP per (client netns, frontend) per refuse interval, so a
 * client retrying in a loop cannot flood the ring the pod programs share. Which
 * refusal reports is decided by a compare-and-swap of the key's last report time:
 * concurrent refusals on several CPUs give one report, never two. The others add to
 * the key's suppressed count, which the next report carries and resets (an exchange,
 * so no increment between the read and the reset is lost). A report lost to a full
 * ring (counted at WEIR_METRICS_EVENTS_LOST) gives its count back to the key.
 */
static __always_inline void weir_lb4_report_refusal(struct bpf_sock_addr *ctx, const struct weir_lb4_key *fe,
						    __u16 service_id)
{
	struct weir_lb4_refused_key key = {
		.netns_cookie = bpf_get_netns_cookie(ctx),
		.address = fe->address,
		.port = fe->dport,
		.proto = fe->proto,
	};
	struct weir_lb4_refused_value fresh = {};
	struct weir_lb4_refused_value *v;
	struct weir_sock_event *ev;
	__u32 suppressed = 0;
	__u64 now, last;

	if (!weir_cfg_lb_refuse_interval_ms)
		return;
	now = bpf_ktime_get_ns();
	v = bpf_map_lookup_elem(&WEIR_MAP_LB4_REFUSED, &key);
	if (v) {
		last = v->last_ns;
		if (now - last < (__u64)weir_cfg_lb_refuse_interval_ms * 1000000ULL ||
		    __sync_val_compare_and_swap(&v->last_ns, last, now) != last) {
			__sync_fetch_and_add(&v->suppressed, 1);
			return;
		}
		suppressed = __sync_lock_test_and_set(&v->suppressed, 0);
	} else {
		fresh.last_ns = now;
		if (bpf_map_update_elem(&WEIR_MAP_LB4_REFUSED, &key, &fresh, BPF_NOEXIST)) {
			/* Another CPU's refusal made the entry first: that one reports. */
			v = bpf_map_lookup_elem(&WEIR_MAP_LB4_REFUSED, &key);
			if (v)
				__sync_fetch_and_add(&v->suppressed, 1);
			return;
		}
	}
	ev = weir_ring_reserve(sizeof(*ev));
	if (!ev) {
		if (!v)
			v = bpf_map_lookup_elem(&WEIR_MAP_LB4_REFUSED, &key);
		if (v)
			__sync_fetch_and_add(&v->suppressed, suppressed + 1);
		return;
	}
	ev->ts_ns = now;
	ev->type = WEIR_EVENT_SOCK_DROP;
	ev->direction = WEIR_DIR_EGRESS;
	ev->verdict = WEIR_VERDICT_DROPPED;
	ev->family = WEIR_FAMILY_IPV4;
	ev->reason = (__s16)WEIR_DROP_NO_SERVICE_BACKEND;
	ev->protocol = fe->proto;
	ev->pad1 = 0;
	ev->netns_cookie = key.netns_cookie;
	ev->address = fe->address;
	ev->port = fe->dport;
	ev->service_id = service_id;
	ev->suppressed = suppressed;
	ev->pad2 = 0;
	bpf_ringbuf_submit(ev, 0);
}

/**
 * weir_lb4_xlate() - translate a socket's destination if it is a Service frontend.
 * @ctx: connect4 or sendmsg4 context; user_ip4/user_port is the destination asked for
 * and becomes the backend's.
 * @proto: IPPROTO_TCP or IPPROTO_UDP.
 *
 * A UDP socket keeps the backend it was given for a frontend while it is still one of
 * the frontend's (socket storage): every datagram of a DNS query and its retries goes
 * to the server that will answer it. Destinations that are no frontend, and sockets
 * of meshed sources, are untouched. A refusal is reported (weir_lb4_report_refusal).
 * Return: WEIR_LB_PASS, or WEIR_LB_REFUSE for a frontend without a backend.
 */
static __always_inline int weir_lb4_xlate(struct bpf_sock_addr *ctx, __u8 proto)
{
	struct weir_lb4_key fe = {
		.address = ctx->user_ip4,
		.dport = (__u16)ctx->user_port,
		.proto = proto,
	};
	struct weir_lb4_service *m, svc;
	struct weir_lb_sock *st = NULL;
	struct weir_lb_backend be;
	struct bpf_sock *sk;
	__u64 now;

	m = bpf_map_lookup_elem(&WEIR_MAP_LB4_SERVICES, &fe);
	if (!m || weir_lb_source_meshed(ctx))
		return WEIR_LB_PASS;
	svc = *m;
	if (!svc.count)
		goto refuse;
	now = bpf_ktime_get_coarse_ns();
	if (proto == IPPROTO_UDP) {
		sk = ctx->sk;
		if (sk)
			st = bpf_sk_storage_get(&WEIR_MAP_LB_SOCK, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st && st->address == fe.address && st->port == fe.dport && st->service_id == svc.service_id &&
		    weir_lb4_find(&fe, &svc, st->backend_addr, st->backend_port, st->backend_slot, &be) == 0)
			goto chosen;
	}
	if (weir_lb4_select(ctx, &fe, &svc, now, &be))
		goto refuse;
chosen:
	if (st) {
		st->address = fe.address;
		st->port = fe.dport;
		st->service_id = svc.service_id;
		st->backend_addr = be.addr;
		st->backend_port = be.port;
		st->backend_slot = be.slot;
	}
	weir_lb4_remember(ctx, &fe, svc.service_id, &be, now);
	ctx->user_ip4 = be.addr;
	ctx->user_port = be.port;
	return WEIR_LB_PASS;
refuse:
	weir_lb4_report_refusal(ctx, &fe, svc.service_id);
	return WEIR_LB_REFUSE;
}

/**
 * weir_lb4_refuse() - fail the connect or send with ECONNREFUSED, counted.
 * Return: the hook's reject verdict; the syscall then returns the errno set here
 * instead of the EPERM a bare reject gives.
 */
static __always_inline int weir_lb4_refuse(void)
{
	bpf_set_retval(-ECONNREFUSED);
	weir_count(WEIR_DROP_NO_SERVICE_BACKEND, WEIR_DIR_EGRESS, 0);
	return WEIR_SOCK_REJECT;
}

/**
 * weir_lb4_xlate_rev() - report a backend's address as the frontend it was reached by.
 * @ctx: recvmsg4 (user_ip4/user_port: the datagram's source) or getpeername4 (the
 * peer) context, rewritten in place.
 * @check_service: only while the frontend still exists as the same service (a reply
 * that arrives after the Service was deleted shows its real source).
 */
static __always_inline void weir_lb4_xlate_rev(struct bpf_sock_addr *ctx, __u8 proto, int check_service)
{
	struct weir_lb4_reverse_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.address = ctx->user_ip4,
		.port = (__u16)ctx->user_port,
	};
	struct weir_lb4_reverse_value *r, rv;
	struct weir_lb4_service *m;
	struct weir_lb4_key fe = {};

	r = bpf_map_lookup_elem(&WEIR_MAP_LB4_REVERSE, &rk);
	if (!r)
		return;
	rv = *r;
	if (check_service) {
		fe.address = rv.address;
		fe.dport = rv.port;
		fe.proto = proto;
		m = bpf_map_lookup_elem(&WEIR_MAP_LB4_SERVICES, &fe);
		if (!m || m->service_id != rv.service_id)
			return;
	}
	ctx->user_ip4 = rv.address;
	ctx->user_port = rv.port;
}

#endif /* WEIR_LIB_LB_H */
