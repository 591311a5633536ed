// Typed codecs for the datapath maps and events, on top of layout.ts.
// Pure functions: no kernel, no addon.
import {
	Dir,
	DirValue,
	EventType,
	Family,
	IPCACHE_STATIC_PREFIX,
	Match,
	POLICY_FIXED_PREFIX,
	PolicyFlags,
	Structs,
	Verdict,
	type Decoded,
	decode,
	dropReasonName,
	encode,
} from './layout.js';
import { intToIpv4, ipv4ToInt, parseCidr4 } from '../shared/ipv4.js';

export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17, SCTP: 132 } as const;

export function ipcacheKey(cidr: string): Buffer {
	const c = parseCidr4(cidr);
	return encode('weir_ipcache_key', {
		prefixlen: IPCACHE_STATIC_PREFIX + c.prefix,
		family: Family.IPv4,
		addr: [c.addr, 0, 0, 0],
	});
}

export function decodeIpcacheKey(buf: Buffer): string {
	const d = decode('weir_ipcache_key', buf);
	const addr = (d['addr'] as number[])[0]!;
	return `${intToIpv4(addr)}/${(d['prefixlen'] as number) - IPCACHE_STATIC_PREFIX}`;
}

/** An ipcache entry's value: the prefix's identity and its IpcacheFlags. */
export interface IpcacheValue {
	identity: number;
	flags: number;
}

export function ipcacheValue(identity: number, flags = 0): Buffer {
	return encode('weir_ipcache_value', { identity, flags });
}

export function decodeIpcacheValue(buf: Buffer): IpcacheValue {
	const d = decode('weir_ipcache_value', buf);
	return { identity: d['identity'] as number, flags: d['flags'] as number };
}

export function endpointKey(ip: string): Buffer {
	return encode('weir_endpoint_key', { addr: [ipv4ToInt(ip), 0, 0, 0], family: Family.IPv4 });
}

export function decodeEndpointKey(buf: Buffer): string {
	return intToIpv4((decode('weir_endpoint_key', buf)['addr'] as number[])[0]!);
}

export interface EndpointInfo {
	epId: number;
	identity: number;
	ifindex: number;
	flags: number;
}

export function endpointInfo(e: EndpointInfo): Buffer {
	return encode('weir_endpoint_info', { ep_id: e.epId, identity: e.identity, ifindex: e.ifindex, flags: e.flags });
}

export function decodeEndpointInfo(buf: Buffer): EndpointInfo {
	const d = decode('weir_endpoint_info', buf);
	return {
		epId: d['ep_id'] as number,
		identity: d['identity'] as number,
		ifindex: d['ifindex'] as number,
		flags: d['flags'] as number,
	};
}

/** A port of a local endpoint whose mTLS mode is its own (weir_mtls_ports): MtlsPortMode. */
export interface MtlsPortEntry {
	epId: number;
	port: number;
	mode: number;
}

export function mtlsPortKey(epId: number, port: number): Buffer {
	if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`bad port ${port}`);
	return encode('weir_mtls_port_key', { ep_id: epId, dport: port });
}

export function mtlsPortValue(mode: number): Buffer {
	return encode('weir_mtls_port_value', { mode });
}

export function decodeMtlsPort(key: Buffer, value: Buffer): MtlsPortEntry {
	const k = decode('weir_mtls_port_key', key);
	return { epId: k['ep_id'] as number, port: k['dport'] as number, mode: decode('weir_mtls_port_value', value)['mode'] as number };
}

/**
 * One allow rule for an endpoint. `protocol` undefined means every protocol (and
 * then `port` must be undefined); `port` undefined means every port of `protocol`;
 * `endPort` makes [port, endPort] a range.
 */
export interface PolicyEntry {
	epId: number;
	/** peer identity; Identity.Unknown (0) is "any peer" */
	identity: number;
	direction: DirValue;
	protocol?: number;
	port?: number;
	endPort?: number;
	ruleId: number;
}

/**
 * Splits [lo, hi] into the fewest aligned power-of-two blocks, as (start, prefix bits
 * of a 16-bit port) pairs: how a port range becomes longest-prefix-match entries.
 */
export function portRangeToPrefixes(lo: number, hi: number): Array<{ port: number; bits: number }> {
	if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi > 65535 || lo > hi) {
		throw new RangeError(`bad port range ${lo}-${hi}`);
	}
	const out: Array<{ port: number; bits: number }> = [];
	let cur = lo;
	while (cur <= hi) {
		let size = 1;
		// Grow while the block stays aligned at cur and inside the range.
		while (size < 65536 && cur % (size * 2) === 0 && cur + size * 2 - 1 <= hi) size *= 2;
		out.push({ port: cur, bits: 16 - Math.log2(size) });
		cur += size;
	}
	return out;
}

/** One weir_policy_key, written directly (hot in big compiles; layout.test checks the offsets). */
function policyKey(epId: number, identity: number, direction: number, protocol: number, dport: number, prefixlen: number): Buffer {
	const b = Buffer.alloc(16);
	b.writeUInt32LE(prefixlen, 0);
	b.writeUInt32LE(epId >>> 0, 4);
	b.writeUInt32LE(identity >>> 0, 8);
	b[12] = direction;
	b[13] = protocol;
	b.writeUInt16BE(dport, 14);
	return b;
}

/** The trie keys that together express one policy entry. */
export function policyKeys(e: PolicyEntry): Buffer[] {
	if (e.protocol === undefined) {
		if (e.port !== undefined) throw new TypeError('a port needs a protocol');
		return [policyKey(e.epId, e.identity, e.direction, 0, 0, POLICY_FIXED_PREFIX)];
	}
	if (e.port === undefined) return [policyKey(e.epId, e.identity, e.direction, e.protocol, 0, POLICY_FIXED_PREFIX + 8)];
	const hi = e.endPort ?? e.port;
	if (hi === e.port) {
		if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) throw new RangeError(`bad port ${e.port}`);
		return [policyKey(e.epId, e.identity, e.direction, e.protocol, e.port, POLICY_FIXED_PREFIX + 24)];
	}
	return portRangeToPrefixes(e.port, hi).map((blk) => policyKey(e.epId, e.identity, e.direction, e.protocol!, blk.port, POLICY_FIXED_PREFIX + 8 + blk.bits));
}

export function policyValue(e: PolicyEntry): Buffer {
	const b = Buffer.alloc(8);
	b.writeUInt32LE(e.ruleId >>> 0, 0);
	b.writeUInt32LE(e.protocol === undefined ? PolicyFlags.AllProtocols : 0, 4);
	return b;
}

export interface Ct4Key {
	saddr: string;
	daddr: string;
	sport: number;
	dport: number;
	protocol: number;
	scope: DirValue;
}

export function decodeCt4Key(buf: Buffer): Ct4Key {
	const d = decode('weir_ct4_key', buf);
	return {
		saddr: intToIpv4(d['saddr'] as number),
		daddr: intToIpv4(d['daddr'] as number),
		sport: d['sport'] as number,
		dport: d['dport'] as number,
		protocol: d['protocol'] as number,
		scope: d['scope'] as DirValue,
	};
}

export interface CtEntry {
	expiresNs: bigint;
	packets: bigint;
	bytes: bigint;
	ruleId: number;
	epId: number;
	peerIdentity: number;
	ifindex: number;
	flags: number;
	tcpFlagsSeen: number;
}

export function decodeCtEntry(buf: Buffer): CtEntry {
	const d = decode('weir_ct_entry', buf);
	return {
		expiresNs: d['expires_ns'] as bigint,
		packets: d['packets'] as bigint,
		bytes: d['bytes'] as bigint,
		ruleId: d['rule_id'] as number,
		epId: d['ep_id'] as number,
		peerIdentity: d['peer_identity'] as number,
		ifindex: d['ifindex'] as number,
		flags: d['flags'] as number,
		tcpFlagsSeen: d['tcp_flags_seen'] as number,
	};
}

export type VerdictName = 'FORWARDED' | 'DROPPED' | 'AUDIT';
export type MatchName = 'none' | 'not-isolated' | 'l3-l4' | 'l3-only' | 'l4-only' | 'all' | 'host';

const verdictNames: Record<number, VerdictName> = {
	[Verdict.Forwarded]: 'FORWARDED',
	[Verdict.Dropped]: 'DROPPED',
	[Verdict.Audit]: 'AUDIT',
};
const matchNames: Record<number, MatchName> = {
	[Match.None]: 'none',
	[Match.NotIsolated]: 'not-isolated',
	[Match.L3L4]: 'l3-l4',
	[Match.L3Only]: 'l3-only',
	[Match.L4Only]: 'l4-only',
	[Match.All]: 'all',
	[Match.Host]: 'host',
};

/** One packet record of the ring buffer (weir_event), decoded. */
export interface DatapathEvent {
	tsNs: bigint;
	type: 'drop' | 'policy-verdict';
	direction: 'ingress' | 'egress';
	verdict: VerdictName;
	reason: number;
	reasonName: string;
	protocol: number;
	tcpFlags: number;
	epId: number;
	srcIdentity: number;
	dstIdentity: number;
	ruleId: number;
	ifindex: number;
	pktLen: number;
	src: string;
	dst: string;
	sport: number;
	dport: number;
	isReply: boolean;
	match: MatchName;
	icmpType: number;
	icmpCode: number;
}

export const EVENT_SIZE = Structs.weir_event.size;

/**
 * A connect or send the socket load balancer refused (weir_sock_event): no packet
 * existed, so the client is its network namespace and the destination the frontend.
 */
export interface SockDropEvent {
	tsNs: bigint;
	type: 'sock-drop';
	direction: 'ingress' | 'egress';
	verdict: VerdictName;
	reason: number;
	reasonName: string;
	protocol: number;
	/** the client socket's network namespace cookie */
	netnsCookie: bigint;
	/** the frontend (ClusterIP) and port the client asked for */
	vip: string;
	port: number;
	serviceId: number;
	/** refusals of this client netns to this frontend since its previous event, counted without one */
	suppressed: number;
}

/** Any record of the events ring. */
export type DatapathRecord = DatapathEvent | SockDropEvent;

/** The weir_event_hdr fields every record starts with, decoded. */
function header(d: Decoded): Pick<DatapathRecord, 'tsNs' | 'direction' | 'verdict' | 'reason' | 'reasonName' | 'protocol'> {
	const reason = d['reason'] as number;
	return {
		tsNs: d['ts_ns'] as bigint,
		direction: d['direction'] === Dir.Egress ? 'egress' : 'ingress',
		verdict: verdictNames[d['verdict'] as number] ?? 'DROPPED',
		reason,
		reasonName: dropReasonName(reason),
		protocol: d['protocol'] as number,
	};
}

export function decodeSockEvent(buf: Buffer): SockDropEvent {
	const d = decode('weir_sock_event', buf);
	return {
		...header(d),
		type: 'sock-drop',
		netnsCookie: d['netns_cookie'] as bigint,
		vip: intToIpv4(d['address'] as number),
		port: d['port'] as number,
		serviceId: d['service_id'] as number,
		suppressed: d['suppressed'] as number,
	};
}

/**
 * Decodes a record of the events ring by the type in its header (weir_event_hdr).
 * Returns undefined for a type this build does not know, or a record too short for
 * its type: the stream goes on without it.
 */
export function decodeRecord(buf: Buffer): DatapathRecord | undefined {
	if (buf.length < Structs.weir_event_hdr.size) return undefined;
	const type = buf.readUInt8(Structs.weir_event_hdr.fields.find((fl) => fl.name === 'type')!.offset);
	switch (type) {
		case EventType.Drop:
		case EventType.PolicyVerdict:
			return buf.length >= Structs.weir_event.size ? decodeEvent(buf) : undefined;
		case EventType.SockDrop:
			return buf.length >= Structs.weir_sock_event.size ? decodeSockEvent(buf) : undefined;
		default:
			return undefined;
	}
}

export function decodeEvent(buf: Buffer): DatapathEvent {
	const d = decode('weir_event', buf);
	const family = d['family'] as number;
	const addr = (k: string): string => (family === 0 ? '' : intToIpv4((d[k] as number[])[0]!));
	return {
		...header(d),
		type: d['type'] === EventType.Drop ? 'drop' : 'policy-verdict',
		tcpFlags: d['tcp_flags'] as number,
		epId: d['ep_id'] as number,
		srcIdentity: d['src_identity'] as number,
		dstIdentity: d['dst_identity'] as number,
		ruleId: d['rule_id'] as number,
		ifindex: d['ifindex'] as number,
		pktLen: d['pkt_len'] as number,
		src: addr('saddr'),
		dst: addr('daddr'),
		sport: d['sport'] as number,
		dport: d['dport'] as number,
		isReply: d['is_reply'] !== 0,
		match: matchNames[d['match_type'] as number] ?? 'none',
		icmpType: d['icmp_type'] as number,
		icmpCode: d['icmp_code'] as number,
	};
}

// ---------------------------------------------------------------------------------
// Socket load balancer (native/bpf/shared/weir_lb.h).

/** weir_lb4_key: a frontend's master entry (slot 0) or one of its backend slots. */
export function lb4Key(vip: string, port: number, proto: number, slot: number): Buffer {
	return encode('weir_lb4_key', { address: ipv4ToInt(vip), dport: port, backend_slot: slot, proto });
}

export function decodeLb4Key(buf: Buffer): { vip: string; port: number; proto: number; slot: number } {
	const d = decode('weir_lb4_key', buf);
	return { vip: intToIpv4(d['address'] as number), port: d['dport'] as number, proto: d['proto'] as number, slot: d['backend_slot'] as number };
}

export interface Lb4Master {
	count: number;
	serviceId: number;
	flags: number;
	affinityTimeoutSec: number;
}

export function lb4Master(m: Lb4Master): Buffer {
	return encode('weir_lb4_service', { count: m.count, service_id: m.serviceId, flags: m.flags, affinity_timeout: m.affinityTimeoutSec });
}

export function lb4Slot(serviceId: number, ip: string, port: number): Buffer {
	return encode('weir_lb4_service', { backend_addr: ipv4ToInt(ip), backend_port: port, service_id: serviceId });
}

/** A services value read as both shapes (which one applies depends on the key's slot). */
export function decodeLb4Service(buf: Buffer): Lb4Master & { backendIp: string; backendPort: number } {
	const d = decode('weir_lb4_service', buf);
	return {
		count: d['count'] as number,
		serviceId: d['service_id'] as number,
		flags: d['flags'] as number,
		affinityTimeoutSec: d['affinity_timeout'] as number,
		backendIp: intToIpv4(d['backend_addr'] as number),
		backendPort: d['backend_port'] as number,
	};
}

export function lb4AddressedKey(netnsCookie: bigint, ip: string, port: number, proto: number): Buffer {
	return encode('weir_lb4_addressed_key', { netns_cookie: netnsCookie, backend_addr: ipv4ToInt(ip), backend_port: port, proto });
}

export function decodeLb4Addressed(buf: Buffer): { lastNs: bigint; vip: string; port: number; serviceId: number } {
	const d = decode('weir_lb4_addressed_value', buf);
	return { lastNs: d['last_ns'] as bigint, vip: intToIpv4(d['address'] as number), port: d['port'] as number, serviceId: d['service_id'] as number };
}
