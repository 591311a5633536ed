// The TypeScript mirror of native/bpf/shared/: constants, drop reasons and struct
// layouts, with codecs. test/unit/layout.test.ts compiles the C headers and checks
// every size, offset and constant here against them.

export const Family = { IPv4: 4, IPv6: 6 } as const;

export const Identity = {
	Unknown: 0,
	Host: 1,
	World: 2,
	/** a pod wired by the CNI before its labels/policy are known: isolated both ways */
	Init: 5,
	RemoteNode: 6,
	FirstPod: 256,
	FirstCidr: 1 << 24,
} as const;

/** Direction from the pod's point of view. */
export const Dir = { Ingress: 0, Egress: 1 } as const;
export type DirValue = (typeof Dir)[keyof typeof Dir];

/**
 * Flags of a local endpoint (weir_endpoint_info.flags). MtlsStrict: PeerAuthentication
 * STRICT, new TCP connections only from the ztunnel or the node; MtlsPorts: some ports
 * have a mode of their own in weir_mtls_ports, overriding MtlsStrict there.
 */
export const EndpointFlags = { IngressIsolated: 1, EgressIsolated: 2, Meshed: 4, MtlsStrict: 8, MtlsPorts: 16 } as const;
/** A port's mode in weir_mtls_ports (any value but Permissive is taken as Strict). */
export const MtlsPortMode = { Permissive: 1, Strict: 2 } as const;
/** Record types on the events ring: the `type` of weir_event_hdr, which every record starts with. */
export const EventType = { Drop: 1, PolicyVerdict: 2, SockDrop: 3 } as const;
export const Verdict = { Forwarded: 1, Dropped: 2, Audit: 3 } as const;
export const Match = { None: 0, NotIsolated: 1, L3L4: 2, L3Only: 3, L4Only: 4, All: 5, Host: 6 } as const;
export const CtFlags = { SeenReply: 1, Syn: 2, FinFwd: 4, FinRev: 8, Rst: 16, Icmp: 32, Proxy: 64 } as const;
export const PolicyFlags = { AllProtocols: 1 } as const;
/** Flags of an ipcache entry (weir_ipcache_value.flags): Meshed, a meshed pod's address, the only destination whose TCP the ztunnel captures. */
export const IpcacheFlags = { Meshed: 1 } as const;

export const IPCACHE_STATIC_PREFIX = 32;
export const POLICY_FIXED_PREFIX = 72;
export const POLICY_FULL_PREFIX = 96;
export const REASON_MAX = 160;
export const METRICS_ENTRIES = REASON_MAX * 2;
export const METRICS_EVENTS_LOST = METRICS_ENTRIES;
/** Socket LB (native/bpf/shared/weir_lb.h): backend slots a frontend may have. */
export const LB_MAX_BACKENDS = 4096;
export const LbFlags = { Affinity: 1 } as const;
/** Flags of a socket LB source (weir_lb_source, keyed by netns cookie). */
export const LbSourceFlags = { Meshed: 1 } as const;

/** Map names, pinned by name under a node's bpffs directory. */
export const MapName = {
	ipcache: 'weir_ipcache',
	endpoints: 'weir_endpoints',
	policy: 'weir_policy',
	ct4: 'weir_ct4',
	events: 'weir_events',
	metrics: 'weir_metrics_v2',
	lb4Services: 'weir_lb4_services',
	lb4Reverse: 'weir_lb4_reverse',
	lb4Affinity: 'weir_lb4_affinity',
	lb4Addressed: 'weir_lb4_addressed',
	lb4Refused: 'weir_lb4_refused',
	lbSock: 'weir_lb_sock',
	lbSources: 'weir_lb_sources',
	mtlsPorts: 'weir_mtls_ports',
} as const;

/** The WEIR_MAP_* macro of a MapName key: lb4Services -> WEIR_MAP_LB4_SERVICES. */
export function mapMacro(key: keyof typeof MapName): string {
	return `WEIR_MAP_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** Stable drop reasons (native/bpf/shared/weir_drop_reasons.h). */
export const DropReason = {
	OK: 0,
	INVALID_PACKET: -130,
	POLICY_DENIED: -131,
	NO_ENDPOINT: -132,
	INVALID_SOURCE: -133,
	UNSUPPORTED_L3: -134,
	CT_CREATE_FAILED: -135,
	FRAG_NOT_SUPPORTED: -136,
	UNSUPPORTED_L4: -137,
	WRONG_INTERFACE: -138,
	NO_SERVICE_BACKEND: -139,
	PROXY_UNAVAILABLE: -140,
	MTLS_REQUIRED: -141,
} as const;
export type DropReasonName = keyof typeof DropReason;

/** What each reason means, for flows and CLI output. */
export const DROP_REASON_TEXT: Record<DropReasonName, string> = {
	OK: 'forwarded',
	INVALID_PACKET: 'truncated or malformed headers',
	POLICY_DENIED: 'no NetworkPolicy rule allows this connection',
	NO_ENDPOINT: 'the pod address is not a registered endpoint',
	INVALID_SOURCE: 'source address does not belong to the sending pod',
	UNSUPPORTED_L3: 'not IPv4 or ARP (IPv6 is not enforced yet)',
	CT_CREATE_FAILED: 'connection table could not take a new entry',
	FRAG_NOT_SUPPORTED: 'IPv4 fragment: its ports cannot be known',
	UNSUPPORTED_L4: 'unused',
	WRONG_INTERFACE: 'destination pod is not behind the interface the packet reached',
	NO_SERVICE_BACKEND: 'the Service has no ready backend: the connect was refused (ECONNREFUSED)',
	PROXY_UNAVAILABLE: "the pod is meshed and its node's ztunnel is not listening: the connection fails closed until the ztunnel is back",
	MTLS_REQUIRED: 'the destination requires mutual TLS (PeerAuthentication STRICT) and the connection did not come through the ztunnel',
};

const reasonByCode = new Map<number, DropReasonName>((Object.entries(DropReason) as Array<[DropReasonName, number]>).map(([k, v]) => [v, k]));

/** Name of a reason code, or `UNKNOWN(<code>)` for a code this build does not know. */
export function dropReasonName(code: number): string {
	return reasonByCode.get(code) ?? `UNKNOWN(${code})`;
}

// ---------------------------------------------------------------------------------
// Struct layouts. A field's type fixes its size and alignment (C rules); offsets are
// computed, and the layout test checks them against the compiler's.

type Scalar = 'u8' | 'u16' | 's16' | 'u32' | 'u64' | 'be16' | 'be32';
type FieldType = Scalar | { array: 'u8' | 'be32'; length: number };
export interface FieldSpec {
	readonly name: string;
	readonly type: FieldType;
}
export interface FieldLayout extends FieldSpec {
	readonly offset: number;
	readonly size: number;
}
export interface StructLayout {
	readonly name: string;
	readonly size: number;
	readonly fields: readonly FieldLayout[];
}

function scalarSize(t: Scalar | 'u8'): number {
	switch (t) {
		case 'u8':
			return 1;
		case 'u16':
		case 's16':
		case 'be16':
			return 2;
		case 'u32':
		case 'be32':
			return 4;
		case 'u64':
			return 8;
	}
}

function defineStruct(name: string, specs: readonly FieldSpec[]): StructLayout {
	let offset = 0;
	let maxAlign = 1;
	const fields: FieldLayout[] = [];
	for (const f of specs) {
		const elem = typeof f.type === 'string' ? f.type : f.type.array;
		const align = scalarSize(elem);
		const size = typeof f.type === 'string' ? align : align * f.type.length;
		offset = Math.ceil(offset / align) * align;
		fields.push({ ...f, offset, size });
		offset += size;
		maxAlign = Math.max(maxAlign, align);
	}
	return { name, size: Math.ceil(offset / maxAlign) * maxAlign, fields };
}

const f = (name: string, type: FieldType): FieldSpec => ({ name, type });

/** weir_event_hdr: the first fields of every ring-buffer record (each record struct repeats them). */
const EVENT_HDR: readonly FieldSpec[] = [
	f('ts_ns', 'u64'),
	f('type', 'u8'),
	f('direction', 'u8'),
	f('verdict', 'u8'),
	f('family', 'u8'),
	f('reason', 's16'),
	f('protocol', 'u8'),
	f('hdr_pad', 'u8'),
];

/** The structs that are records on the events ring, by their EventType. */
export const EVENT_RECORDS = { weir_event: [EventType.Drop, EventType.PolicyVerdict], weir_sock_event: [EventType.SockDrop] } as const;

export const Structs = {
	weir_ipcache_key: defineStruct('weir_ipcache_key', [
		f('prefixlen', 'u32'),
		f('pad1', 'u16'),
		f('pad2', 'u8'),
		f('family', 'u8'),
		f('addr', { array: 'be32', length: 4 }),
	]),
	weir_ipcache_value: defineStruct('weir_ipcache_value', [f('identity', 'u32'), f('flags', 'u32')]),
	weir_endpoint_key: defineStruct('weir_endpoint_key', [f('addr', { array: 'be32', length: 4 }), f('family', 'u8'), f('pad', { array: 'u8', length: 3 })]),
	weir_endpoint_info: defineStruct('weir_endpoint_info', [f('ep_id', 'u32'), f('identity', 'u32'), f('ifindex', 'u32'), f('flags', 'u32')]),
	weir_policy_key: defineStruct('weir_policy_key', [
		f('prefixlen', 'u32'),
		f('ep_id', 'u32'),
		f('identity', 'u32'),
		f('direction', 'u8'),
		f('protocol', 'u8'),
		f('dport', 'be16'),
	]),
	weir_policy_value: defineStruct('weir_policy_value', [f('rule_id', 'u32'), f('flags', 'u32')]),
	weir_ct4_key: defineStruct('weir_ct4_key', [
		f('saddr', 'be32'),
		f('daddr', 'be32'),
		f('sport', 'be16'),
		f('dport', 'be16'),
		f('protocol', 'u8'),
		f('scope', 'u8'),
		f('pad', 'u16'),
	]),
	weir_ct_entry: defineStruct('weir_ct_entry', [
		f('expires_ns', 'u64'),
		f('packets', 'u64'),
		f('bytes', 'u64'),
		f('rule_id', 'u32'),
		f('ep_id', 'u32'),
		f('peer_identity', 'u32'),
		f('ifindex', 'u32'),
		f('flags', 'u16'),
		f('tcp_flags_seen', 'u8'),
		f('pad', 'u8'),
	]),
	weir_event_hdr: defineStruct('weir_event_hdr', EVENT_HDR),
	weir_event: defineStruct('weir_event', [
		...EVENT_HDR.slice(0, -1),
		f('tcp_flags', 'u8'),
		f('ep_id', 'u32'),
		f('src_identity', 'u32'),
		f('dst_identity', 'u32'),
		f('rule_id', 'u32'),
		f('ifindex', 'u32'),
		f('pkt_len', 'u32'),
		f('saddr', { array: 'be32', length: 4 }),
		f('daddr', { array: 'be32', length: 4 }),
		f('sport', 'u16'),
		f('dport', 'u16'),
		f('is_reply', 'u8'),
		f('match_type', 'u8'),
		f('icmp_type', 'u8'),
		f('icmp_code', 'u8'),
	]),
	weir_metrics_value: defineStruct('weir_metrics_value', [f('packets', 'u64'), f('bytes', 'u64')]),
	weir_lb4_key: defineStruct('weir_lb4_key', [
		f('address', 'be32'),
		f('dport', 'be16'),
		f('backend_slot', 'u16'),
		f('proto', 'u8'),
		f('pad', { array: 'u8', length: 3 }),
	]),
	weir_lb4_service: defineStruct('weir_lb4_service', [
		f('backend_addr', 'be32'),
		f('backend_port', 'be16'),
		f('count', 'u16'),
		f('service_id', 'u16'),
		f('flags', 'u8'),
		f('pad', 'u8'),
		f('affinity_timeout', 'u32'),
	]),
	weir_lb4_reverse_key: defineStruct('weir_lb4_reverse_key', [f('cookie', 'u64'), f('address', 'be32'), f('port', 'be16'), f('pad', 'u16')]),
	weir_lb4_reverse_value: defineStruct('weir_lb4_reverse_value', [f('address', 'be32'), f('port', 'be16'), f('service_id', 'u16')]),
	weir_lb4_affinity_key: defineStruct('weir_lb4_affinity_key', [f('netns_cookie', 'u64'), f('service_id', 'u16'), f('pad', { array: 'u8', length: 6 })]),
	weir_lb4_affinity_value: defineStruct('weir_lb4_affinity_value', [
		f('last_used_ns', 'u64'),
		f('backend_addr', 'be32'),
		f('backend_port', 'be16'),
		f('backend_slot', 'u16'),
	]),
	weir_lb4_addressed_key: defineStruct('weir_lb4_addressed_key', [
		f('netns_cookie', 'u64'),
		f('backend_addr', 'be32'),
		f('backend_port', 'be16'),
		f('proto', 'u8'),
		f('pad', 'u8'),
	]),
	weir_lb4_addressed_value: defineStruct('weir_lb4_addressed_value', [f('last_ns', 'u64'), f('address', 'be32'), f('port', 'be16'), f('service_id', 'u16')]),
	weir_lb4_refused_key: defineStruct('weir_lb4_refused_key', [
		f('netns_cookie', 'u64'),
		f('address', 'be32'),
		f('port', 'be16'),
		f('proto', 'u8'),
		f('pad', 'u8'),
	]),
	weir_lb4_refused_value: defineStruct('weir_lb4_refused_value', [f('last_ns', 'u64'), f('suppressed', 'u32'), f('pad', 'u32')]),
	weir_sock_event: defineStruct('weir_sock_event', [
		...EVENT_HDR.slice(0, -1),
		f('pad1', 'u8'),
		f('netns_cookie', 'u64'),
		f('address', 'be32'),
		f('port', 'be16'),
		f('service_id', 'u16'),
		f('suppressed', 'u32'),
		f('pad2', 'u32'),
	]),
	weir_lb_source: defineStruct('weir_lb_source', [f('flags', 'u32'), f('pad', 'u32')]),
	weir_mtls_port_key: defineStruct('weir_mtls_port_key', [f('ep_id', 'u32'), f('dport', 'u16'), f('pad', 'u16')]),
	weir_mtls_port_value: defineStruct('weir_mtls_port_value', [f('mode', 'u32')]),
} as const;

export type StructName = keyof typeof Structs;

/** A decoded struct: numbers, bigints for u64, number arrays for arrays. */
export type Decoded = Record<string, number | bigint | number[]>;

function writeScalar(buf: Buffer, t: Scalar | 'u8', off: number, v: number | bigint): void {
	switch (t) {
		case 'u8':
			buf.writeUInt8(Number(v), off);
			return;
		case 'u16':
			buf.writeUInt16LE(Number(v), off);
			return;
		case 's16':
			buf.writeInt16LE(Number(v), off);
			return;
		case 'be16':
			buf.writeUInt16BE(Number(v), off);
			return;
		case 'u32':
			buf.writeUInt32LE(Number(v) >>> 0, off);
			return;
		case 'be32':
			buf.writeUInt32BE(Number(v) >>> 0, off);
			return;
		case 'u64':
			buf.writeBigUInt64LE(BigInt(v), off);
			return;
	}
}

function readScalar(buf: Buffer, t: Scalar | 'u8', off: number): number | bigint {
	switch (t) {
		case 'u8':
			return buf.readUInt8(off);
		case 'u16':
			return buf.readUInt16LE(off);
		case 's16':
			return buf.readInt16LE(off);
		case 'be16':
			return buf.readUInt16BE(off);
		case 'u32':
			return buf.readUInt32LE(off);
		case 'be32':
			return buf.readUInt32BE(off);
		case 'u64':
			return buf.readBigUInt64LE(off);
	}
}

/**
 * Encodes a struct (host byte order for plain fields, network order for be* fields).
 * Missing fields are zero. Throws on unknown field names, so typos cannot pass.
 */
export function encode(name: StructName, value: Decoded, into?: Buffer, at = 0): Buffer {
	const layout = Structs[name];
	const buf = into ?? Buffer.alloc(layout.size);
	if (!into) buf.fill(0);
	for (const key of Object.keys(value)) {
		if (!layout.fields.some((fl) => fl.name === key)) {
			throw new TypeError(`${name} has no field '${key}'`);
		}
	}
	for (const fl of layout.fields) {
		const v = value[fl.name];
		if (v === undefined) continue;
		if (typeof fl.type === 'string') {
			writeScalar(buf, fl.type, at + fl.offset, v as number | bigint);
		} else {
			const arr = v as number[];
			const t = fl.type.array;
			const es = scalarSize(t);
			for (let i = 0; i < fl.type.length; i++) writeScalar(buf, t, at + fl.offset + i * es, arr[i] ?? 0);
		}
	}
	return buf;
}

/** Decodes a struct from `buf` at `at`; throws if the buffer is too short. */
export function decode(name: StructName, buf: Buffer, at = 0): Decoded {
	const layout = Structs[name];
	if (buf.length - at < layout.size) {
		throw new RangeError(`${name}: need ${layout.size} bytes, got ${buf.length - at}`);
	}
	const out: Decoded = {};
	for (const fl of layout.fields) {
		if (typeof fl.type === 'string') {
			out[fl.name] = readScalar(buf, fl.type, at + fl.offset);
		} else {
			const t = fl.type.array;
			const es = scalarSize(t);
			const arr: number[] = [];
			for (let i = 0; i < fl.type.length; i++) arr.push(Number(readScalar(buf, t, at + fl.offset + i * es)));
			out[fl.name] = arr;
		}
	}
	return out;
}
