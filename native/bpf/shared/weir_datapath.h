/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structs, enums and constants shared by the eBPF programs and userspace.
 *
 * This header set (with weir_drop_reasons.h) is the only C that the addon and the
 * TypeScript codecs mirror; test/unit/layout.test.ts checks sizes, offsets and enum
 * values against src/bpf/layout.ts. Changing a map's key or value layout means a new
 * map name (weir_policy_v2), never a silent mutation of a pinned map.
 *
 * Byte order: addresses and ports inside keys that take part in longest-prefix
 * matching are in network order (so prefixes are the high bits); every other field
 * is host order.
 */
#ifndef WEIR_DATAPATH_H
#define WEIR_DATAPATH_H

#include <linux/types.h>

/* Address families as stored in keys (not AF_* to keep one byte). */
#define WEIR_FAMILY_IPV4 4
#define WEIR_FAMILY_IPV6 6

/* Reserved security identities (after Cilium's numbering). */
#define WEIR_ID_UNKNOWN	    0	       /* also: "any peer" in a policy key */
#define WEIR_ID_HOST	    1	       /* this node */
#define WEIR_ID_WORLD	    2	       /* outside the cluster, no CIDR identity */
#define WEIR_ID_INIT	    5	       /* a pod wired before its policy is known (fail-closed) */
#define WEIR_ID_REMOTE_NODE 6	       /* another node of the cluster */
#define WEIR_ID_FIRST_POD   256	       /* first identity of a pod label set */
#define WEIR_ID_FIRST_CIDR  (1u << 24) /* first identity of an ipBlock CIDR */

/* Traffic direction, from the pod's point of view. */
#define WEIR_DIR_INGRESS 0 /* delivered to the pod (host veth tc egress) */
#define WEIR_DIR_EGRESS	 1 /* sent by the pod (host veth tc ingress) */

/* Endpoint flags. */
#define WEIR_EP_INGRESS_ISOLATED (1u << 0)
#define WEIR_EP_EGRESS_ISOLATED	 (1u << 1)
#define WEIR_EP_MESHED		 (1u << 2)
/*
 * PeerAuthentication STRICT (docs/ztunnel.md, "mTLS mode"): a new TCP connection to
 * the endpoint is admitted only from the node's ztunnel (a socket carrying its mark)
 * or from this node; any other is dropped as WEIR_DROP_MTLS_REQUIRED. The agent sets
 * it on meshed endpoints only (lib/mtls.h).
 */
#define WEIR_EP_MTLS_STRICT	 (1u << 3)
/*
 * Some ports of the endpoint have a mode of their own in weir_mtls_ports
 * (portLevelMtls), which overrides WEIR_EP_MTLS_STRICT for those ports. Without it
 * the map is not consulted.
 */
#define WEIR_EP_MTLS_PORTS	 (1u << 4)

/*
 * Record types on the events ring buffer (the type field of struct weir_event_hdr):
 * every record starts with that header, and its type says which struct it is.
 */
#define WEIR_EVENT_DROP		  1 /* struct weir_event: a packet dropped */
#define WEIR_EVENT_POLICY_VERDICT 2 /* struct weir_event: a new connection's verdict */
#define WEIR_EVENT_SOCK_DROP	  3 /* struct weir_sock_event (weir_lb.h): a connect or send refused, no packet */

/* Verdicts carried by events. */
#define WEIR_VERDICT_FORWARDED 1
#define WEIR_VERDICT_DROPPED   2
#define WEIR_VERDICT_AUDIT     3 /* would be dropped, allowed by audit mode */

/* How a policy verdict was reached. */
#define WEIR_MATCH_NONE		0 /* denied: nothing matched */
#define WEIR_MATCH_NOT_ISOLATED 1 /* allowed: no policy isolates this direction */
#define WEIR_MATCH_L3_L4	2 /* identity + protocol/port entry */
#define WEIR_MATCH_L3_ONLY	3 /* identity + all protocols */
#define WEIR_MATCH_L4_ONLY	4 /* any peer + protocol/port entry */
#define WEIR_MATCH_ALL		5 /* any peer, all protocols */
#define WEIR_MATCH_HOST		6 /* allowed: traffic from this node (kubelet probes) */

/* Conntrack entry flags. */
#define WEIR_CT_F_SEEN_REPLY (1u << 0)
#define WEIR_CT_F_SYN	     (1u << 1)
#define WEIR_CT_F_FIN_FWD    (1u << 2)
#define WEIR_CT_F_FIN_REV    (1u << 3)
#define WEIR_CT_F_RST	     (1u << 4)
#define WEIR_CT_F_ICMP	     (1u << 5)
/*
 * The connection belongs to the ztunnel: its packets from the pod are steered to
 * the ztunnel's socket (capture.h), and fail closed when that socket is gone. Set
 * on a captured connection (tc ingress) and on one the ztunnel opened to the pod
 * (tc egress sees its socket mark), so the pod's replies go back to it.
 */
#define WEIR_CT_F_PROXY	     (1u << 6)

/* ipcache: LPM trie, prefix -> identity and flags. */
struct weir_ipcache_key {
	__u32 prefixlen; /* 32 + prefix length of addr */
	__u16 pad1;
	__u8 pad2;
	__u8 family;   /* WEIR_FAMILY_* */
	__u32 addr[4]; /* network order; IPv4 in addr[0] */
};

#define WEIR_IPCACHE_STATIC_PREFIX 32 /* bits of pad1, pad2, family */

/*
 * ipcache entry flags. WEIR_IPCACHE_F_MESHED: the prefix is a meshed pod's address.
 * A meshed pod's new TCP connection is captured by the node's ztunnel only to such an
 * address (capture.h); to anything else it leaves as plain TCP. Why: docs/ztunnel.md.
 */
#define WEIR_IPCACHE_F_MESHED (1u << 0)

struct weir_ipcache_value {
	__u32 identity;
	__u32 flags; /* WEIR_IPCACHE_F_*; the other bits are reserved (0) */
};

/* endpoints: local pod address -> endpoint. */
struct weir_endpoint_key {
	__u32 addr[4]; /* network order; IPv4 in addr[0] */
	__u8 family;
	__u8 pad[3];
};

struct weir_endpoint_info {
	__u32 ep_id;
	__u32 identity;
	__u32 ifindex; /* host side of the pod's veth */
	__u32 flags;   /* WEIR_EP_* */
};

/* mtls_ports: (endpoint, destination port) -> the port's mTLS mode (portLevelMtls). */
struct weir_mtls_port_key {
	__u32 ep_id;
	__u16 dport; /* host order */
	__u16 pad;
};

#define WEIR_MTLS_PERMISSIVE 1 /* plaintext admitted (PERMISSIVE, DISABLE) */
#define WEIR_MTLS_STRICT     2 /* only the ztunnel and the node; any value but PERMISSIVE means this */

struct weir_mtls_port_value {
	__u32 mode; /* WEIR_MTLS_* */
};

/*
 * policy: LPM trie.  An entry allows (endpoint, peer identity, direction, protocol,
 * port prefix).  The fixed part is ep_id..direction (72 bits); protocol 0 bits means
 * "all protocols", 8 bits + dport prefix means a port or a block of a port range.
 * A peer identity of WEIR_ID_UNKNOWN is the "any peer" wildcard, looked up second.
 */
struct weir_policy_key {
	__u32 prefixlen;
	__u32 ep_id;
	__u32 identity;
	__u8 direction;
	__u8 protocol;
	__u16 dport; /* network order */
};

#define WEIR_POLICY_FIXED_PREFIX 72 /* ep_id + identity + direction */
#define WEIR_POLICY_FULL_PREFIX	 96

struct weir_policy_value {
	__u32 rule_id; /* agent's id of the policy rule that allows this */
	__u32 flags;   /* WEIR_POLICY_F_* */
};

/* The entry covers every protocol (a rule with no ports). */
#define WEIR_POLICY_F_ALL_PROTOCOLS (1u << 0)

/* conntrack (IPv4): LRU hash, one entry per (tuple, scope). */
struct weir_ct4_key {
	__u32 saddr; /* network order */
	__u32 daddr; /* network order */
	__u16 sport; /* network order */
	__u16 dport; /* network order */
	__u8 protocol;
	__u8 scope; /* WEIR_DIR_* of the hook that created it */
	__u16 pad;
};

struct weir_ct_entry {
	__u64 expires_ns; /* bpf_ktime_get_coarse_ns() deadline (CLOCK_MONOTONIC_COARSE) */
	__u64 packets;
	__u64 bytes;
	__u32 rule_id; /* policy rule that allowed it (0: not isolated) */
	__u32 ep_id;
	__u32 peer_identity;
	__u32 ifindex;	     /* host veth of the pod that owns the entry */
	__u16 flags;	     /* WEIR_CT_F_* */
	__u8 tcp_flags_seen; /* union of TCP flags seen, both directions */
	__u8 pad;
};

/*
 * The first 16 bytes of every record on the events ring buffer, whatever its type:
 * the agent reads type here to know which struct the record is. Each record struct
 * repeats these fields, in this order, as its own first fields (checked by
 * test/unit/layout.test.ts), so that each stays one flat struct.
 */
struct weir_event_hdr {
	__u64 ts_ns;	/* bpf_ktime_get_ns() */
	__u8 type;	/* WEIR_EVENT_* */
	__u8 direction; /* WEIR_DIR_* */
	__u8 verdict;	/* WEIR_VERDICT_* */
	__u8 family;	/* WEIR_FAMILY_* */
	__s16 reason;	/* WEIR_OK or a WEIR_DROP_* code */
	__u8 protocol;
	__u8 hdr_pad; /* the record's own (weir_event: tcp_flags) */
};

/* Ring-buffer event (WEIR_EVENT_DROP, WEIR_EVENT_POLICY_VERDICT): one packet. */
struct weir_event {
	__u64 ts_ns;	/* bpf_ktime_get_ns() */
	__u8 type;	/* WEIR_EVENT_* */
	__u8 direction; /* WEIR_DIR_* */
	__u8 verdict;	/* WEIR_VERDICT_* */
	__u8 family;	/* WEIR_FAMILY_* */
	__s16 reason;	/* WEIR_OK or a WEIR_DROP_* code */
	__u8 protocol;
	__u8 tcp_flags;
	__u32 ep_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 rule_id; /* matching policy rule, 0 if none */
	__u32 ifindex;
	__u32 pkt_len;
	__u32 saddr[4]; /* network order */
	__u32 daddr[4]; /* network order */
	__u16 sport;	/* host order */
	__u16 dport;	/* host order */
	__u8 is_reply;
	__u8 match_type; /* WEIR_MATCH_* */
	__u8 icmp_type;
	__u8 icmp_code;
};

/* Metrics: per-CPU array indexed by (-reason << 1) | direction. */
struct weir_metrics_value {
	__u64 packets;
	__u64 bytes;
};

#define WEIR_METRICS_ENTRIES	 (WEIR_REASON_MAX * 2)
/* Index of the "events lost" counter (ring buffer full), after all reasons. */
#define WEIR_METRICS_EVENTS_LOST (WEIR_METRICS_ENTRIES)

/*
 * Map names (pinned by name under the caller's bpffs directory). Each expands to the
 * identifier of the map's variable in the lib/ headers, which libbpf takes as the
 * map's name and pin name: maps are declared and referenced only through these.
 */
#define WEIR_MAP_IPCACHE    weir_ipcache
#define WEIR_MAP_ENDPOINTS  weir_endpoints
#define WEIR_MAP_POLICY	    weir_policy
#define WEIR_MAP_CT4	    weir_ct4
#define WEIR_MAP_EVENTS	    weir_events
#define WEIR_MAP_METRICS    weir_metrics_v2 /* v2: WEIR_REASON_MAX 140 -> 160 */
#define WEIR_MAP_MTLS_PORTS weir_mtls_ports

#endif /* WEIR_DATAPATH_H */
