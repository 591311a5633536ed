/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing into a flat tuple. No maps. */
#ifndef WEIR_PARSE_H
#define WEIR_PARSE_H

#include "common.h"

/* ICMPv4, from RFC 792 (linux/icmp.h drags in libc's socket headers). */
#define ICMP_ECHOREPLY	   0
#define ICMP_DEST_UNREACH  3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_REDIRECT	   5
#define ICMP_ECHO	   8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

struct weir_icmphdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 id;	/* echo only */
	__u16 sequence; /* echo only */
};

#define WEIR_L3_IPV4  1
#define WEIR_L3_ARP   2
#define WEIR_L3_OTHER 3

/**
 * struct weir_pkt - what the programs need to know about one IPv4 packet.
 * @inner: for ICMP errors, the tuple of the packet the error is about (as sent).
 */
struct weir_pkt {
	__u32 saddr, daddr; /* network order */
	__u16 sport, dport; /* network order; ICMP echo: id in both */
	__u8 protocol;
	__u8 tcp_flags;
	__u8 icmp_type, icmp_code;
	__u8 is_icmp_error;
	__u32 len;
	struct {
		__u32 saddr, daddr;
		__u16 sport, dport;
		__u8 protocol;
	} inner;
};

/* TCP flag bits in byte 13 of the TCP header. */
#define WEIR_TCP_FIN 0x01
#define WEIR_TCP_SYN 0x02
#define WEIR_TCP_RST 0x04
#define WEIR_TCP_PSH 0x08
#define WEIR_TCP_ACK 0x10

/* A TCP SYN that opens a connection (no ACK). */
static __always_inline int weir_tcp_is_syn(const struct weir_pkt *p)
{
	return p->protocol == IPPROTO_TCP && (p->tcp_flags & (WEIR_TCP_SYN | WEIR_TCP_ACK)) == WEIR_TCP_SYN;
}

static __always_inline int weir_icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB ||
	       type == ICMP_SOURCE_QUENCH || type == ICMP_REDIRECT;
}

static __always_inline int weir_icmp_is_echo(__u8 type)
{
	return type == ICMP_ECHO || type == ICMP_ECHOREPLY;
}

/**
 * weir_parse_l3() - classify the frame by ethertype.
 * Return: WEIR_L3_IPV4, WEIR_L3_ARP, WEIR_L3_OTHER, or WEIR_DROP_INVALID_PACKET when
 * the Ethernet header itself is truncated. @proto_out gets the ethertype (host order).
 */
static __always_inline int weir_parse_l3(struct __sk_buff *skb, __u16 *proto_out)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return WEIR_DROP_INVALID_PACKET;
	*proto_out = bpf_ntohs(eth->h_proto);
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return WEIR_L3_IPV4;
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return WEIR_L3_ARP;
	return WEIR_L3_OTHER;
}

/**
 * weir_parse_ipv4() - fill @p from an IPv4 packet after the Ethernet header.
 * Return: WEIR_OK, WEIR_DROP_INVALID_PACKET for truncated or inconsistent headers,
 * or WEIR_DROP_FRAG_NOT_SUPPORTED for a fragment (its ports cannot be known).
 */
static __always_inline int weir_parse_ipv4(struct __sk_buff *skb, struct weir_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	__u32 ihl;
	void *l4;

	if ((void *)(ip + 1) > data_end)
		return WEIR_DROP_INVALID_PACKET;
	ihl = ip->ihl * 4;
	if (ip->version != 4 || ihl < sizeof(*ip))
		return WEIR_DROP_INVALID_PACKET;
	if (bpf_ntohs(ip->tot_len) < ihl)
		return WEIR_DROP_INVALID_PACKET;

	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->protocol = ip->protocol;
	p->len = skb->len;
	/* Fields only some protocols set (no memset of the whole struct per packet). */
	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->icmp_type = 0;
	p->icmp_code = 0;
	p->is_icmp_error = 0;

	/* More-fragments set, or a non-zero offset: a fragment. */
	if (ip->frag_off & bpf_htons(0x3fff))
		return WEIR_DROP_FRAG_NOT_SUPPORTED;

	l4 = (void *)ip + ihl;
	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;
		__u8 *flags = l4 + 13;

		if ((void *)(th + 1) > data_end)
			return WEIR_DROP_INVALID_PACKET;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = *flags;
		break;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		/* SCTP's common header starts with the same two ports. */
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return WEIR_DROP_INVALID_PACKET;
		p->sport = uh->source;
		p->dport = uh->dest;
		break;
	}
	case IPPROTO_ICMP: {
		struct weir_icmphdr *ic = l4;

		if ((void *)(ic + 1) > data_end)
			return WEIR_DROP_INVALID_PACKET;
		p->icmp_type = ic->type;
		p->icmp_code = ic->code;
		if (weir_icmp_is_echo(ic->type)) {
			p->sport = ic->id;
			p->dport = ic->id;
		} else if (weir_icmp_is_error(ic->type)) {
			struct iphdr *in = (void *)(ic + 1);
			__u16 *ports;

			if ((void *)(in + 1) > data_end)
				return WEIR_DROP_INVALID_PACKET;
			if (in->ihl != 5) /* inner options: not worth the verifier's trouble */
				return WEIR_DROP_INVALID_PACKET;
			ports = (void *)(in + 1);
			if ((void *)(ports + 2) > data_end)
				return WEIR_DROP_INVALID_PACKET;
			p->is_icmp_error = 1;
			p->inner.saddr = in->saddr;
			p->inner.daddr = in->daddr;
			p->inner.protocol = in->protocol;
			if (in->protocol == IPPROTO_ICMP) {
				/* inner echo: the id follows type, code and checksum */
				if ((void *)(ports + 3) > data_end)
					return WEIR_DROP_INVALID_PACKET;
				p->inner.sport = ports[2];
				p->inner.dport = ports[2];
			} else {
				p->inner.sport = ports[0];
				p->inner.dport = ports[1];
			}
		}
		break;
	}
	default:
		/* Other protocols are policed by L3 rules, with ports 0. */
		break;
	}
	return WEIR_OK;
}

#endif /* WEIR_PARSE_H */
