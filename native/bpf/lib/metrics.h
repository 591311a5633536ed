/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * metrics: per-reason, per-direction counters, shared by every program pinned under
 * one root (the pod programs count packets, the socket load balancer the connects it
 * refuses).
 */
#ifndef WEIR_METRICS_H
#define WEIR_METRICS_H

#include "common.h"

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

#endif /* WEIR_METRICS_H */
