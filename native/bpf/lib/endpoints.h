/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* endpoints: the pods wired on this node. */
#ifndef WEIR_ENDPOINTS_H
#define WEIR_ENDPOINTS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct weir_endpoint_key);
	__type(value, struct weir_endpoint_info);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_ENDPOINTS SEC(".maps");

/**
 * weir_endpoint_lookup4() - the local endpoint owning an IPv4 address.
 * Return: the endpoint, or NULL if the address is not a pod wired on this node.
 */
static __always_inline struct weir_endpoint_info *weir_endpoint_lookup4(__u32 addr)
{
	struct weir_endpoint_key key = {
		.addr = {addr},
		.family = WEIR_FAMILY_IPV4,
	};

	return bpf_map_lookup_elem(&WEIR_MAP_ENDPOINTS, &key);
}

#endif /* WEIR_ENDPOINTS_H */
