/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ipcache: every known prefix, the security identity behind it, and its flags. */
#ifndef WEIR_IPCACHE_H
#define WEIR_IPCACHE_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct weir_ipcache_key);
	__type(value, struct weir_ipcache_value);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_IPCACHE SEC(".maps");

/**
 * weir_ipcache_lookup4() - security identity and flags of an IPv4 address, in one
 * lookup.
 * @flags: set to the WEIR_IPCACHE_F_* flags of the longest matching prefix, or to 0
 *         when no prefix covers the address.
 * Return: the identity of the longest matching prefix, or WEIR_ID_WORLD when no
 * prefix covers the address (anything unknown is outside the cluster, and not meshed).
 */
static __always_inline __u32 weir_ipcache_lookup4(__u32 addr, __u32 *flags)
{
	struct weir_ipcache_key key = {
		.prefixlen = WEIR_IPCACHE_STATIC_PREFIX + 32,
		.family = WEIR_FAMILY_IPV4,
		.addr = {addr},
	};
	struct weir_ipcache_value *v = bpf_map_lookup_elem(&WEIR_MAP_IPCACHE, &key);

	if (!v) {
		*flags = 0;
		return WEIR_ID_WORLD;
	}
	*flags = v->flags;
	return v->identity;
}

/**
 * weir_ipcache_identity4() - security identity of an IPv4 address.
 * Return: as weir_ipcache_lookup4(), for a caller that does not need the flags.
 */
static __always_inline __u32 weir_ipcache_identity4(__u32 addr)
{
	__u32 flags;

	return weir_ipcache_lookup4(addr, &flags);
}

#endif /* WEIR_IPCACHE_H */
