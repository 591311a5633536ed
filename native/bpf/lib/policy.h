/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* policy: which peers an isolated endpoint admits, per direction, protocol and port. */
#ifndef WEIR_POLICY_H
#define WEIR_POLICY_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct weir_policy_key);
	__type(value, struct weir_policy_value);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_POLICY SEC(".maps");

/**
 * weir_policy_lookup() - look for an entry allowing a new connection.
 * @identity: the peer's security identity.
 * @dport: destination port, network order (0 for protocols without ports).
 * @match: set to the WEIR_MATCH_* kind of the entry found.
 *
 * The peer's own identity is tried first, then the "any peer" wildcard; within one
 * identity the trie returns the most specific of port, port block and all-protocols.
 * Return: the allowing entry's rule id (never 0), or 0 when nothing allows it.
 */
static __always_inline __u32 weir_policy_lookup(__u32 ep_id, __u32 identity, __u8 dir, __u8 protocol, __u16 dport,
						__u8 *match)
{
	struct weir_policy_key key = {
		.prefixlen = WEIR_POLICY_FULL_PREFIX,
		.ep_id = ep_id,
		.identity = identity,
		.direction = dir,
		.protocol = protocol,
		.dport = dport,
	};
	struct weir_policy_value *v;

	v = bpf_map_lookup_elem(&WEIR_MAP_POLICY, &key);
	if (v) {
		*match = v->flags & WEIR_POLICY_F_ALL_PROTOCOLS ? WEIR_MATCH_L3_ONLY : WEIR_MATCH_L3_L4;
		return v->rule_id;
	}
	key.identity = WEIR_ID_UNKNOWN;
	v = bpf_map_lookup_elem(&WEIR_MAP_POLICY, &key);
	if (v) {
		*match = v->flags & WEIR_POLICY_F_ALL_PROTOCOLS ? WEIR_MATCH_ALL : WEIR_MATCH_L4_ONLY;
		return v->rule_id;
	}
	*match = WEIR_MATCH_NONE;
	return 0;
}

#endif /* WEIR_POLICY_H */
