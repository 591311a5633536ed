/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * mtls: Istio's PeerAuthentication STRICT, enforced where a meshed pod receives.
 *
 * A meshed pod receives meshed traffic only from its node's ztunnel: the inbound side
 * of HBONE delivers each connection over a socket carrying the ztunnel's mark
 * (weir_cfg_ztunnel_mark) with the client pod's address as source. Anything else that
 * reaches the pod's veth is plaintext from a client outside the mesh. For an endpoint
 * whose mode is STRICT (WEIR_EP_MTLS_STRICT, or its port's entry here), weir_to_pod
 * refuses a new TCP connection that does not carry the mark, unless it comes from this
 * node (WEIR_ID_HOST: kubelet probes, which Istio exempts too).
 *
 * Only TCP: the ztunnel carries TCP alone (as Istio ambient's does), so UDP, SCTP and
 * ICMP to a STRICT pod are NetworkPolicy's alone. Only new connections: what conntrack
 * already admitted keeps flowing until it closes, as with a NetworkPolicy change.
 *
 * The map holds the ports whose mode differs from the endpoint's (portLevelMtls); an
 * endpoint has entries only with WEIR_EP_MTLS_PORTS, so others cost no lookup.
 */
#ifndef WEIR_MTLS_H
#define WEIR_MTLS_H

#include "common.h"
#include "parse.h"
#include "pod_config.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct weir_mtls_port_key);
	__type(value, struct weir_mtls_port_value);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} WEIR_MAP_MTLS_PORTS SEC(".maps");

/**
 * weir_from_ztunnel() - whether a packet delivered to a pod was sent by a ztunnel socket.
 *
 * A mark set inside a pod does not survive its veth, so only a socket of the node's
 * own namespace (the ztunnel's, which needs CAP_NET_ADMIN for SO_MARK) carries it.
 * Return: non-zero when ztunnel marking is configured and the packet carries the mark.
 */
static __always_inline int weir_from_ztunnel(const struct __sk_buff *skb)
{
	return weir_cfg_ztunnel_mark && skb->mark == weir_cfg_ztunnel_mark;
}

/**
 * weir_mtls_strict() - whether a port of an endpoint requires mutual TLS.
 * @dport: destination port, host order.
 * Return: non-zero for STRICT: the port's own entry when the endpoint has port-level
 * modes and one exists (any mode but WEIR_MTLS_PERMISSIVE is STRICT), else the
 * endpoint's WEIR_EP_MTLS_STRICT.
 */
static __always_inline int weir_mtls_strict(const struct weir_endpoint_info *ep, __u16 dport)
{
	struct weir_mtls_port_key key = {
		.ep_id = ep->ep_id,
		.dport = dport,
	};
	struct weir_mtls_port_value *v;

	if (ep->flags & WEIR_EP_MTLS_PORTS) {
		v = bpf_map_lookup_elem(&WEIR_MAP_MTLS_PORTS, &key);
		if (v)
			return v->mode != WEIR_MTLS_PERMISSIVE;
	}
	return ep->flags & WEIR_EP_MTLS_STRICT;
}

/**
 * weir_mtls_check() - PeerAuthentication for a packet about to open a connection to a
 * pod (one that conntrack does not know, in weir_to_pod).
 * @ep: the destination endpoint.
 * @peer: the source's security identity.
 *
 * Every such TCP packet is checked, not only SYNs: a stray ACK admitted here would
 * leave a conntrack entry that a later SYN of the same tuple could ride.
 * Return: WEIR_OK, or WEIR_DROP_MTLS_REQUIRED for TCP to a STRICT port that comes
 * neither from the ztunnel nor from this node.
 */
static __always_inline int weir_mtls_check(const struct __sk_buff *skb, const struct weir_pkt *p,
					   const struct weir_endpoint_info *ep, __u32 peer)
{
	if (p->protocol != IPPROTO_TCP || !(ep->flags & (WEIR_EP_MTLS_STRICT | WEIR_EP_MTLS_PORTS)))
		return WEIR_OK;
	if (weir_from_ztunnel(skb) || peer == WEIR_ID_HOST)
		return WEIR_OK;
	if (!weir_mtls_strict(ep, bpf_ntohs(p->dport)))
		return WEIR_OK;
	return WEIR_DROP_MTLS_REQUIRED;
}

#endif /* WEIR_MTLS_H */
