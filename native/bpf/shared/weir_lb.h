/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket-level load balancing of ClusterIP Services (sock_lb.bpf.c): the structs of
 * the maps userspace writes or reads. Mirrored in src/kernel/layout.ts and checked by
 * test/unit/layout.test.ts, like weir_datapath.h.
 *
 * Byte order: addresses and ports are network order (as the socket hooks see them in
 * struct bpf_sock_addr); every other field is host order.
 */
#ifndef WEIR_LB_H
#define WEIR_LB_H

#include <linux/types.h>

/* Backends one Service frontend may have: slots 1..WEIR_LB_MAX_BACKENDS. */
#define WEIR_LB_MAX_BACKENDS 4096

/* Master entry flags. */
#define WEIR_LB_F_AFFINITY (1u << 0) /* sessionAffinity: ClientIP (affinity_timeout > 0) */

/*
 * services: hash, (frontend, slot) -> entry, after Cilium's lb4_services_v2. Slot 0
 * of a frontend is its master entry (backend count, service id, flags, affinity
 * timeout); slots 1..count hold its backends inline. A connect reads the master, then
 * one slot: userspace writes new slots before the master that counts them, and when
 * a Service shrinks it writes the master before deleting the slots past the count,
 * so no connect ever sees a count whose slots are not there yet.
 */
struct weir_lb4_key {
	__u32 address;	    /* frontend (ClusterIP), network order */
	__u16 dport;	    /* frontend port, network order */
	__u16 backend_slot; /* 0: master, 1..count: a backend */
	__u8 proto;	    /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad[3];
};

struct weir_lb4_service {
	__u32 backend_addr; /* slot: the backend's IPv4, network order; master: 0 */
	__u16 backend_port; /* slot: the backend's port, network order; master: 0 */
	__u16 count;	    /* master: backend slots in use (0: refuse connects); slot: 0 */
	__u16 service_id;   /* master and slots: the Service's id, 1..65535 */
	__u8 flags;	    /* master: WEIR_LB_F_* */
	__u8 pad;
	__u32 affinity_timeout; /* master: ClientIP affinity, seconds (0: none) */
};

/*
 * reverse: LRU hash, (socket, backend) -> the frontend it was reached through.
 * Written when a socket's destination is translated; read by recvmsg4 (the source of
 * a datagram) and getpeername4, which then report the ClusterIP, not the backend.
 */
struct weir_lb4_reverse_key {
	__u64 cookie;  /* bpf_get_socket_cookie() */
	__u32 address; /* backend, network order */
	__u16 port;    /* backend port, network order */
	__u16 pad;
};

struct weir_lb4_reverse_value {
	__u32 address; /* frontend, network order */
	__u16 port;    /* frontend port, network order */
	__u16 service_id;
};

/*
 * affinity: LRU hash, (client netns, service) -> the backend it was last given.
 * A socket-level hook sees no client IP before the packet exists: the client is its
 * network namespace (one pod), as in Cilium's socket LB. The backend is kept with the
 * slot it sat in, checked first; if the Service's slots moved, it is searched for.
 */
struct weir_lb4_affinity_key {
	__u64 netns_cookie; /* bpf_get_netns_cookie() of the client socket */
	__u16 service_id;
	__u8 pad[6];
};

struct weir_lb4_affinity_value {
	__u64 last_used_ns; /* bpf_ktime_get_coarse_ns() of the last connect it decided */
	__u32 backend_addr; /* network order */
	__u16 backend_port; /* network order */
	__u16 backend_slot; /* where the backend was when last used */
};

/*
 * addressed: LRU hash, (client netns, backend, protocol) -> the Service it was
 * reached through, for flows: the datapath sees pod -> backend packets, and this
 * says which Service the pod addressed.
 */
struct weir_lb4_addressed_key {
	__u64 netns_cookie;
	__u32 backend_addr; /* network order */
	__u16 backend_port; /* network order */
	__u8 proto;
	__u8 pad;
};

struct weir_lb4_addressed_value {
	__u64 last_ns; /* bpf_ktime_get_coarse_ns() of a recent translation (refreshed at most once a second) */
	__u32 address; /* frontend, network order */
	__u16 port;    /* frontend port, network order */
	__u16 service_id;
};

/*
 * refused: LRU hash, (client netns, frontend) -> the last refusal event it gave and
 * the refusals counted since without one. A connect refused for want of a backend
 * emits a WEIR_EVENT_SOCK_DROP at most once per key per weir_cfg_lb_refuse_interval_ms;
 * the ones in between only count here (and, like every refusal, in weir_metrics_v2), and
 * the next event carries their number. Written only by the programs.
 */
struct weir_lb4_refused_key {
	__u64 netns_cookie; /* bpf_get_netns_cookie() of the client socket */
	__u32 address;	    /* frontend, network order */
	__u16 port;	    /* frontend port, network order */
	__u8 proto;
	__u8 pad;
};

struct weir_lb4_refused_value {
	__u64 last_ns;	  /* bpf_ktime_get_ns() of the last event emitted for the key */
	__u32 suppressed; /* refusals since then without an event */
	__u32 pad;
};

/*
 * A connect or send the load balancer refused (WEIR_EVENT_SOCK_DROP on the events
 * ring, next to the pod programs' struct weir_event). A socket hook runs before any
 * packet exists: there is no source address yet, so the client is named by its
 * network namespace. The first fields are struct weir_event_hdr's (weir_datapath.h).
 */
struct weir_sock_event {
	__u64 ts_ns;	    /* bpf_ktime_get_ns() */
	__u8 type;	    /* WEIR_EVENT_SOCK_DROP */
	__u8 direction;	    /* WEIR_DIR_EGRESS: the client sends */
	__u8 verdict;	    /* WEIR_VERDICT_DROPPED */
	__u8 family;	    /* WEIR_FAMILY_IPV4 */
	__s16 reason;	    /* WEIR_DROP_NO_SERVICE_BACKEND */
	__u8 protocol;	    /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad1;	    /* (weir_event_hdr.hdr_pad) */
	__u64 netns_cookie; /* bpf_get_netns_cookie() of the client socket */
	__u32 address;	    /* the frontend asked for, network order */
	__u16 port;	    /* its port, network order */
	__u16 service_id;
	__u32 suppressed; /* refusals of this (netns, frontend) since its previous event, counted without one */
	__u32 pad2;
};

/* Source flags (weir_lb_source.flags). */
#define WEIR_LB_SRC_MESHED (1u << 0) /* not load-balanced here: the node's ztunnel load-balances it */

/*
 * sources: hash, client netns cookie -> how the load balancer treats its sockets.
 * Written by userspace. A source marked WEIR_LB_SRC_MESHED keeps the ClusterIP it
 * asked for (connect4 and sendmsg4 leave it untranslated and refuse nothing), because
 * its ztunnel load-balances the Service itself (DESIGN.md). Only a Service destination
 * pays the lookup.
 */
struct weir_lb_source {
	__u32 flags; /* WEIR_LB_SRC_* */
	__u32 pad;
};

/* Map names (see weir_datapath.h). */
#define WEIR_MAP_LB4_SERVICES  weir_lb4_services
#define WEIR_MAP_LB4_REVERSE   weir_lb4_reverse
#define WEIR_MAP_LB4_AFFINITY  weir_lb4_affinity
#define WEIR_MAP_LB4_ADDRESSED weir_lb4_addressed
#define WEIR_MAP_LB4_REFUSED   weir_lb4_refused
#define WEIR_MAP_LB_SOCK       weir_lb_sock
#define WEIR_MAP_LB_SOURCES    weir_lb_sources

#endif /* WEIR_LB_H */
