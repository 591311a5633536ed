/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * capture: transparent steering of a meshed pod's TCP to a meshed pod into the node's
 * ztunnel.
 *
 * Weir steers at the host side of the pod's veth (tc ingress: what the pod sends)
 * into sockets of the ztunnel that live in the node's network namespace, the way
 * Cilium hands traffic to its proxy. A packet is given to a socket with
 * bpf_sk_assign() and marked (weir_cfg_capture_mark); one policy-routing rule sends
 * that mark to a table whose default route is `local`, so the kernel delivers the
 * packet locally whatever its destination address, and TCP takes the assigned socket
 * instead of looking one up. The socket is, in this order:
 *
 *   1. the established (or half-open, or TIME-WAIT) socket of the packet's own tuple:
 *      a connection the ztunnel accepted from the pod, or one it opened to the pod
 *      (the pod's replies; the ztunnel's sockets may be bound to a foreign address);
 *   2. for a SYN, the ztunnel's IP_TRANSPARENT listener on weir_cfg_proxy_port: the
 *      accepted socket keeps the original destination as its local address.
 *
 * No socket means the ztunnel is down: the caller drops with
 * WEIR_DROP_PROXY_UNAVAILABLE (fail closed, never a bypass). No maps here: the
 * conntrack entry of a captured connection carries WEIR_CT_F_PROXY (conntrack.h).
 */
#ifndef WEIR_CAPTURE_H
#define WEIR_CAPTURE_H

#include "common.h"
#include "parse.h"
#include "pod_config.h"

/**
 * weir_capture_eligible() - whether a new packet from a pod is steered at all.
 * @ep_flags: the sending endpoint's WEIR_EP_* flags.
 * @dst_flags: the destination address's WEIR_IPCACHE_F_* flags, from the ipcache
 *             lookup the policy made (weir_ipcache_lookup4()).
 *
 * Only a meshed destination is captured. The ztunnel delivers with the client pod's
 * address as source, so the replies of a connection to a non-meshed host elsewhere
 * would come back over the node's uplink, where nothing steers them to the ztunnel's
 * socket (they would reach the pod, which resets them); and delivering from the
 * node's address instead would show the node, not the pod, to the destination's
 * NetworkPolicy. Anything else a meshed pod sends leaves as plain TCP, policed as for
 * any pod.
 *
 * Return: non-zero for TCP from an endpoint flagged WEIR_EP_MESHED to an address
 * flagged WEIR_IPCACHE_F_MESHED, when capture is on, unless the packet carries the
 * ztunnel's own socket mark. (A mark set in the pod's namespace does not survive the
 * veth: the kernel clears it when a packet changes namespace. The check matters for
 * packets of the node's own sockets, i.e. if these programs ever see the ztunnel's
 * traffic, and costs one compare.)
 */
static __always_inline int weir_capture_eligible(const struct __sk_buff *skb, const struct weir_pkt *p, __u32 ep_flags,
						 __u32 dst_flags)
{
	if (!weir_cfg_capture || p->protocol != IPPROTO_TCP || !(ep_flags & WEIR_EP_MESHED) ||
	    !(dst_flags & WEIR_IPCACHE_F_MESHED))
		return 0;
	return !weir_cfg_ztunnel_mark || skb->mark != weir_cfg_ztunnel_mark;
}

/* Assigns sk (a lookup result, released here) and marks the packet for local delivery. */
static __always_inline int weir_capture_assign_sk(struct __sk_buff *skb, struct bpf_sock *sk)
{
	long err = bpf_sk_assign(skb, sk, 0);

	bpf_sk_release(sk);
	if (err)
		return WEIR_DROP_PROXY_UNAVAILABLE;
	skb->mark = (skb->mark & ~weir_cfg_capture_mask) | weir_cfg_capture_mark;
	return WEIR_OK;
}

/**
 * weir_capture() - steer one packet of a captured connection into the ztunnel.
 * @syn: the packet opens a connection (SYN without ACK): the listener may take it.
 * Return: WEIR_OK when a ztunnel socket took the packet (pass it: TC_ACT_OK), or
 * WEIR_DROP_PROXY_UNAVAILABLE when no socket of the ztunnel is there for it.
 */
static __always_inline int weir_capture(struct __sk_buff *skb, const struct weir_pkt *p, int syn)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	t.ipv4.saddr = p->saddr;
	t.ipv4.daddr = p->daddr;
	t.ipv4.sport = p->sport;
	t.ipv4.dport = p->dport;
	sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		/* A listener bound to the original destination's port is not ours to use. */
		if (sk->state != BPF_TCP_LISTEN)
			return weir_capture_assign_sk(skb, sk);
		bpf_sk_release(sk);
	}
	if (!syn)
		return WEIR_DROP_PROXY_UNAVAILABLE;
	/* Only the listener matches this tuple: no connection has port 0. */
	t.ipv4.saddr = 0;
	t.ipv4.sport = 0;
	t.ipv4.daddr = weir_cfg_proxy_addr;
	t.ipv4.dport = bpf_htons(weir_cfg_proxy_port);
	sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return WEIR_DROP_PROXY_UNAVAILABLE;
	if (sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return WEIR_DROP_PROXY_UNAVAILABLE;
	}
	return weir_capture_assign_sk(skb, sk);
}

#endif /* WEIR_CAPTURE_H */
