// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level load balancing of ClusterIP Services: cgroup v2 sock_addr hooks,
 * attached (as links) to the cgroup that holds the node's pods. Logic: lib/lb.h.
 *
 * connect4     TCP and connected UDP: a frontend becomes a backend, or the connect
 *              fails with ECONNREFUSED when the Service has none.
 * sendmsg4     unconnected UDP, each datagram: the same, the socket keeping its backend.
 * recvmsg4     unconnected UDP, each datagram received: a backend's source address
 *              becomes the frontend the socket sent to.
 * getpeername4 the peer of a translated socket is reported as the frontend.
 */
#include "lib/common.h"
#include "lib/lb.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("cgroup/connect4")
int weir_sock_connect4(struct bpf_sock_addr *ctx)
{
	__u32 proto = ctx->protocol;

	if (proto != IPPROTO_TCP && !(proto == IPPROTO_UDP && weir_cfg_lb_udp))
		return WEIR_SOCK_ALLOW;
	if (weir_lb4_xlate(ctx, (__u8)proto) == WEIR_LB_REFUSE)
		return weir_lb4_refuse();
	return WEIR_SOCK_ALLOW;
}

SEC("cgroup/sendmsg4")
int weir_sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (!weir_cfg_lb_udp || ctx->protocol != IPPROTO_UDP)
		return WEIR_SOCK_ALLOW;
	if (weir_lb4_xlate(ctx, IPPROTO_UDP) == WEIR_LB_REFUSE)
		return weir_lb4_refuse();
	return WEIR_SOCK_ALLOW;
}

SEC("cgroup/recvmsg4")
int weir_sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	if (weir_cfg_lb_udp && ctx->protocol == IPPROTO_UDP)
		weir_lb4_xlate_rev(ctx, IPPROTO_UDP, 1);
	return WEIR_SOCK_ALLOW;
}

SEC("cgroup/getpeername4")
int weir_sock_getpeername4(struct bpf_sock_addr *ctx)
{
	__u32 proto = ctx->protocol;

	/* The socket did connect through the frontend: that stays its peer. */
	if ((proto == IPPROTO_TCP && weir_cfg_lb_tcp_reverse) || (proto == IPPROTO_UDP && weir_cfg_lb_udp))
		weir_lb4_xlate_rev(ctx, (__u8)proto, 0);
	return WEIR_SOCK_ALLOW;
}
