/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * event_ring: the one events ring buffer of a node, shared by every object pinned
 * under the same root. The pod programs (events.h) put packet records on it, the
 * socket load balancer (lb.h) its refusals; libbpf reuses the pinned ring by name, so
 * whichever object loads first creates it and the agent reads a single stream.
 * Declared here only, so that both objects ask for the same ring (same type and size:
 * libbpf refuses to reuse a pin that differs).
 *
 * Every record starts with struct weir_event_hdr (shared/weir_datapath.h); its type
 * tells the agent which struct follows.
 */
#ifndef WEIR_EVENT_RING_H
#define WEIR_EVENT_RING_H

#include "common.h"
#include "metrics.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_EVENTS SEC(".maps");

/**
 * weir_ring_reserve() - room for one record on the events ring.
 * Return: the record to fill and bpf_ringbuf_submit(), or NULL when the ring is full.
 * A full ring loses the record, never the packet or the verdict: the loss is counted
 * at WEIR_METRICS_EVENTS_LOST so the agent can report it.
 */
static __always_inline void *weir_ring_reserve(__u64 size)
{
	void *rec = bpf_ringbuf_reserve(&WEIR_MAP_EVENTS, size, 0);

	if (!rec)
		weir_metrics_add(WEIR_METRICS_EVENTS_LOST, 0);
	return rec;
}

#endif /* WEIR_EVENT_RING_H */
