// Builds Ethernet/IPv4 frames for BPF_PROG_TEST_RUN. Checksums are left zero: the
// programs under test never look at them.
import { IPPROTO } from '../../src/kernel/codecs.js';
import { ipv4ToInt } from '../../src/shared/ipv4.js';

export const TCP_FLAGS = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

export interface PacketSpec {
	src: string;
	dst: string;
	protocol: 'tcp' | 'udp' | 'sctp' | 'icmp' | number;
	sport?: number;
	dport?: number;
	tcpFlags?: number;
	/** ICMP type/code; echo packets use `id`. */
	icmpType?: number;
	icmpCode?: number;
	id?: number;
	/** for ICMP errors: the packet the error is about (its first 28 bytes are embedded). */
	inner?: PacketSpec;
	fragOffset?: number;
	moreFragments?: boolean;
	payload?: number;
	ethertype?: number;
}

function protoNumber(p: PacketSpec['protocol']): number {
	if (typeof p === 'number') return p;
	return { tcp: IPPROTO.TCP, udp: IPPROTO.UDP, sctp: IPPROTO.SCTP, icmp: IPPROTO.ICMP }[p];
}

function l4(spec: PacketSpec): Buffer {
	const proto = protoNumber(spec.protocol);
	if (proto === IPPROTO.TCP) {
		const b = Buffer.alloc(20);
		b.writeUInt16BE(spec.sport ?? 0, 0);
		b.writeUInt16BE(spec.dport ?? 0, 2);
		b.writeUInt8(5 << 4, 12);
		b.writeUInt8(spec.tcpFlags ?? TCP_FLAGS.SYN, 13);
		b.writeUInt16BE(65535, 14);
		return b;
	}
	if (proto === IPPROTO.UDP || proto === IPPROTO.SCTP) {
		const b = Buffer.alloc(proto === IPPROTO.UDP ? 8 : 12);
		b.writeUInt16BE(spec.sport ?? 0, 0);
		b.writeUInt16BE(spec.dport ?? 0, 2);
		if (proto === IPPROTO.UDP) b.writeUInt16BE(8 + (spec.payload ?? 0), 4);
		return b;
	}
	if (proto === IPPROTO.ICMP) {
		const inner = spec.inner ? ipv4(spec.inner).subarray(0, 28) : Buffer.alloc(0);
		const b = Buffer.alloc(8);
		b.writeUInt8(spec.icmpType ?? 8, 0);
		b.writeUInt8(spec.icmpCode ?? 0, 1);
		b.writeUInt16BE(spec.id ?? 0, 4);
		return Buffer.concat([b, inner]);
	}
	return Buffer.alloc(0);
}

/** The IPv4 packet (no Ethernet header). */
export function ipv4(spec: PacketSpec): Buffer {
	const body = Buffer.concat([l4(spec), Buffer.alloc(spec.payload ?? 0)]);
	const h = Buffer.alloc(20);
	h.writeUInt8(0x45, 0);
	h.writeUInt16BE(20 + body.length, 2);
	let frag = (spec.fragOffset ?? 0) & 0x1fff;
	if (spec.moreFragments) frag |= 0x2000;
	h.writeUInt16BE(frag, 6);
	h.writeUInt8(64, 8);
	h.writeUInt8(protoNumber(spec.protocol), 9);
	h.writeUInt32BE(ipv4ToInt(spec.src), 12);
	h.writeUInt32BE(ipv4ToInt(spec.dst), 16);
	return Buffer.concat([h, body]);
}

/** A whole Ethernet frame. */
export function frame(spec: PacketSpec): Buffer {
	const eth = Buffer.alloc(14);
	Buffer.from([0x02, 0, 0, 0, 0, 2]).copy(eth, 0);
	Buffer.from([0x02, 0, 0, 0, 0, 1]).copy(eth, 6);
	eth.writeUInt16BE(spec.ethertype ?? 0x0800, 12);
	if (spec.ethertype !== undefined && spec.ethertype !== 0x0800) return Buffer.concat([eth, Buffer.alloc(46)]);
	return Buffer.concat([eth, ipv4(spec)]);
}

/** The reply direction of a spec (addresses and ports swapped). */
export function reverse(spec: PacketSpec, tcpFlags?: number): PacketSpec {
	return {
		...spec,
		src: spec.dst,
		dst: spec.src,
		sport: spec.dport,
		dport: spec.sport,
		...(tcpFlags === undefined ? {} : { tcpFlags }),
		...(spec.icmpType === 8 ? { icmpType: 0 } : {}),
	};
}

/** struct __sk_buff bytes with only ifindex set (what test-run uses as the device). */
export function skbCtx(ifindex: number, mark = 0): Buffer {
	const ctx = Buffer.alloc(192); // sizeof(struct __sk_buff) on 6.x kernels
	ctx.writeUInt32LE(mark, 8); // offsetof(struct __sk_buff, mark)
	ctx.writeUInt32LE(ifindex, 40); // offsetof(struct __sk_buff, ifindex)
	return ctx;
}
