// Flow records, after Hubble's: what the datapath saw, with both ends named and the
// policy behind the verdict. Built from datapath events by a pure enricher that reads
// the agent's current view through narrow lookups: the pod programs' packet events,
// and the socket load balancer's refusals (a connect to a Service with no ready
// backend, Hubble's "Service backend not found"), which have no packet.
import { DatapathEvent, DatapathRecord, IPPROTO, SockDropEvent } from '../kernel/codecs.js';
import { DROP_REASON_TEXT, DropReasonName, Identity } from '../kernel/layout.js';
import type { Flow, FlowEndpoint, FlowMesh, FlowPolicyRef, FlowServiceRef, FlowVerdict } from '../shared/wire.js';

// The record's shape is the API's wire (src/shared/wire.ts), shared with the web UI.
export type { Flow, FlowEndpoint, FlowMesh, FlowPolicyRef, FlowServiceRef, FlowVerdict } from '../shared/wire.js';

/** What the enricher may ask of the agent's state. */
export interface FlowContext {
	node: string;
	/** a pod by IP (local or remote), if known */
	podByIp(ip: string): { namespace: string; name: string; workload?: string; labels: Record<string, string> } | undefined;
	/** a non-pod identity's description (host, world, cidr:<prefix>, remote-node) */
	reservedName(identity: number): string | undefined;
	rule(ruleId: number): { namespace: string; name: string; direction: string; index: number } | undefined;
	/** policies isolating an endpoint in a direction ('namespace/name') */
	isolatedBy(epId: number, direction: 'ingress' | 'egress'): string[];
	/** whether the local pod at this address is meshed (its TCP goes through the node's ztunnel) */
	meshed?(ip: string): boolean;
	/** the PeerAuthentication ('namespace/name') that makes a local endpoint's port STRICT, if one does */
	mtlsStrictBy?(epId: number, port: number): string | undefined;
	/** converts the datapath's monotonic ns to wall-clock ms */
	wallClockMs(monoNs: bigint): number;
	/** the Service a local client reached this backend through (socket load balancing), if any */
	addressedService?(client: string, backend: string, port: number, protocol: 'TCP' | 'UDP'): FlowServiceRef | undefined;
	/** the local client behind a network namespace cookie: a pod (its address and identity), this node, or unknown */
	clientByNetns?(netnsCookie: bigint): { ip: string; identity: number } | 'host' | undefined;
	/** the Service a frontend (ClusterIP, port, protocol) belongs to */
	serviceByFrontend?(vip: string, port: number, protocol: 'TCP' | 'UDP'): FlowServiceRef | undefined;
	/** a pod address's security identity (the datapath's), for flows that do not carry one (the ztunnel's) */
	identityOf?(ip: string): number | undefined;
}

const TCP_FLAG_NAMES: Array<[number, string]> = [
	[0x02, 'SYN'],
	[0x10, 'ACK'],
	[0x01, 'FIN'],
	[0x04, 'RST'],
	[0x08, 'PSH'],
	[0x20, 'URG'],
];

export function tcpFlagNames(flags: number): string[] {
	return TCP_FLAG_NAMES.filter(([bit]) => flags & bit).map(([, n]) => n);
}

function protocolName(p: number): string {
	switch (p) {
		case IPPROTO.TCP:
			return 'TCP';
		case IPPROTO.UDP:
			return 'UDP';
		case IPPROTO.SCTP:
			return 'SCTP';
		case IPPROTO.ICMP:
			return 'ICMPv4';
		default:
			return `proto-${p}`;
	}
}

function reservedFor(identity: number): string | undefined {
	if (identity === Identity.Host) return 'host';
	if (identity === Identity.World) return 'world';
	if (identity === Identity.Init) return 'init';
	if (identity === Identity.RemoteNode) return 'remote-node';
	return undefined;
}

/** A flow's end: the pod at `ip` as the agent knows it, else the reserved identity's name. */
export function endpoint(ctx: FlowContext, ip: string, identity: number, port: number | undefined): FlowEndpoint {
	const pod = ip ? ctx.podByIp(ip) : undefined;
	const out: FlowEndpoint = { ip, identity, labels: [] };
	if (port !== undefined) out.port = port;
	if (pod) {
		out.namespace = pod.namespace;
		out.pod = pod.name;
		if (pod.workload) out.workload = pod.workload;
		out.labels = Object.entries(pod.labels)
			.map(([k, v]) => `${k}=${v}`)
			.sort();
		if (ctx.meshed?.(ip)) out.meshed = true;
	} else {
		const r = reservedFor(identity) ?? ctx.reservedName(identity);
		if (r) out.reserved = r;
	}
	return out;
}

export function endpointName(e: FlowEndpoint): string {
	const where = e.pod ? `${e.namespace}/${e.pod}` : e.reserved ? (e.ip ? `${e.ip} (${e.reserved})` : e.reserved) : e.ip;
	return e.port !== undefined && e.port !== 0 ? `${where}:${e.port}` : where;
}

function policyRef(full: string, kind: FlowPolicyRef['kind'] = 'NetworkPolicy'): FlowPolicyRef {
	const [namespace, name] = full.split('/');
	return { kind, namespace: namespace ?? '', name: name ?? full };
}

/** A policy as flows print it: a NetworkPolicy by its name, anything else with its kind. */
export function policyRefName(p: FlowPolicyRef): string {
	return `${p.kind === 'PeerAuthentication' ? 'PeerAuthentication ' : ''}${p.namespace}/${p.name}`;
}

/** The flow of any ring-buffer record. */
export function toFlow(ev: DatapathRecord, ctx: FlowContext): Flow {
	return ev.type === 'sock-drop' ? sockDropFlow(ev, ctx) : packetFlow(ev, ctx);
}

/**
 * A connect or send the socket load balancer refused: the client named by its
 * network namespace (a local pod, or this node), the destination the ClusterIP and
 * port it asked for, with the Service. No packet existed: no ports of the client, no
 * TCP flags.
 */
function sockDropFlow(ev: SockDropEvent, ctx: FlowContext): Flow {
	const protocol = ev.protocol === IPPROTO.UDP ? 'UDP' : 'TCP';
	const client = ctx.clientByNetns?.(ev.netnsCookie);
	const source: FlowEndpoint =
		client === 'host'
			? { ip: '', identity: Identity.Host, labels: [], reserved: 'host' }
			: client
				? endpoint(ctx, client.ip, client.identity, undefined)
				: { ip: '', identity: Identity.Unknown, labels: [], reserved: `netns:${ev.netnsCookie}` };
	const destination: FlowEndpoint = { ip: ev.vip, port: ev.port, identity: Identity.Unknown, labels: [] };
	const svc = ctx.serviceByFrontend?.(ev.vip, ev.port, protocol);
	if (svc) destination.service = svc;
	const known = DROP_REASON_TEXT[ev.reasonName as DropReasonName] ?? `unknown reason ${ev.reason}`;
	const flow: Flow = {
		time: new Date(ctx.wallClockMs(ev.tsNs)).toISOString(),
		node: ctx.node,
		verdict: ev.verdict,
		dropReason: ev.reasonName,
		dropReasonDesc:
			ev.reasonName === 'NO_SERVICE_BACKEND' && svc
				? `no ready backend for Service ${svc.namespace}/${svc.name}:${svc.port}; the ${protocol === 'TCP' ? 'connect' : 'send'} was refused with ECONNREFUSED`
				: known,
		direction: ev.direction,
		isReply: false,
		ipVersion: 'IPv4',
		protocol: protocolName(ev.protocol),
		source,
		destination,
		match: 'none',
		summary: '',
	};
	if (ev.suppressed > 0) flow.suppressed = ev.suppressed;
	flow.summary = summarize(flow);
	return flow;
}

function packetFlow(ev: DatapathEvent, ctx: FlowContext): Flow {
	const hasPorts = ev.protocol === IPPROTO.TCP || ev.protocol === IPPROTO.UDP || ev.protocol === IPPROTO.SCTP;
	const flow: Flow = {
		time: new Date(ctx.wallClockMs(ev.tsNs)).toISOString(),
		node: ctx.node,
		verdict: ev.verdict,
		direction: ev.direction,
		isReply: ev.isReply,
		ipVersion: 'IPv4',
		protocol: protocolName(ev.protocol),
		source: endpoint(ctx, ev.src, ev.srcIdentity, hasPorts ? ev.sport : undefined),
		destination: endpoint(ctx, ev.dst, ev.dstIdentity, hasPorts ? ev.dport : undefined),
		match: ev.match,
		summary: '',
	};
	if (!ev.isReply && (ev.protocol === IPPROTO.TCP || ev.protocol === IPPROTO.UDP) && ctx.addressedService) {
		const svc = ctx.addressedService(ev.src, ev.dst, ev.dport, ev.protocol === IPPROTO.TCP ? 'TCP' : 'UDP');
		if (svc) flow.destination.service = svc;
	}
	if (ev.protocol === IPPROTO.TCP) flow.tcpFlags = tcpFlagNames(ev.tcpFlags);
	if (ev.protocol === IPPROTO.ICMP) flow.icmp = { type: ev.icmpType, code: ev.icmpCode };
	if (ev.type === 'drop') {
		flow.dropReason = ev.reasonName;
		flow.dropReasonDesc = DROP_REASON_TEXT[ev.reasonName as DropReasonName] ?? `unknown reason ${ev.reason}`;
	}
	if (ev.ruleId) {
		const r = ctx.rule(ev.ruleId);
		if (r) flow.allowedBy = { kind: 'NetworkPolicy', namespace: r.namespace, name: r.name, rule: `${r.direction}[${r.index}]` };
	}
	if (ev.reasonName === 'POLICY_DENIED' || ev.verdict === 'AUDIT') {
		flow.isolatedBy = ctx.isolatedBy(ev.epId, ev.direction).map((p) => policyRef(p));
	} else if (ev.reasonName === 'MTLS_REQUIRED') {
		// Named as NetworkPolicy drops name theirs: what keeps plaintext out of the pod.
		const by = ctx.mtlsStrictBy?.(ev.epId, ev.dport);
		if (by) flow.isolatedBy = [policyRef(by, 'PeerAuthentication')];
	}
	flow.summary = summarize(flow);
	return flow;
}

/** A byte count in SI units: '512 B', '1.2 kB', '3.4 MB'. */
export function formatBytes(n: number): string {
	if (n < 1000) return `${n} B`;
	const units = ['kB', 'MB', 'GB', 'TB'];
	let v = n / 1000;
	let i = 0;
	while (v >= 999.95 && i < units.length - 1) {
		v /= 1000;
		i++;
	}
	return `${v.toFixed(1)} ${units[i]}`;
}

/** A duration: '12 ms', '1.5 s', '2.5 min'. */
export function formatDuration(ms: number): string {
	if (ms < 1000) return `${Math.round(ms)} ms`;
	if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
	return `${(ms / 60_000).toFixed(1)} min`;
}

/** A mesh flow's kind of event, after the protocol: 'mesh open', 'mesh close', 'mesh refused'. */
export function meshType(m: FlowMesh): string {
	return `mesh ${m.event}`;
}

/**
 * What the ztunnel says of the connection: 'mTLS <source id> → <destination id>',
 * then for a close the bytes each way (↑ source to destination, ↓ back), how long it
 * was open and the error that ended it, if one did.
 */
export function meshDetail(m: FlowMesh): string {
	const parts = [`${m.security === 'mutual_tls' ? 'mTLS' : 'plaintext'} ${m.sourceIdentity ?? '?'} → ${m.destinationIdentity ?? '?'}`];
	if (m.bytesSent !== undefined && m.bytesReceived !== undefined) parts.push(`${formatBytes(m.bytesSent)} ↑ ${formatBytes(m.bytesReceived)} ↓`);
	if (m.durationMs !== undefined) parts.push(formatDuration(m.durationMs));
	if (m.event === 'close' && m.reason) parts.push(`ended by an error: ${m.reason}`);
	return parts.join(', ');
}

/**
 * The policy behind a mesh flow's verdict. The destination's ztunnel authorizes (Istio's
 * AuthorizationPolicy); the source's learns the policy only from a refusal.
 */
export function meshPolicy(f: Flow, m: FlowMesh): string {
	const policy = m.authorizationPolicy ? `AuthorizationPolicy ${m.authorizationPolicy}` : undefined;
	if (f.verdict === 'DROPPED') return policy ? `denied by ${policy}` : '';
	if (policy) return `allowed by ${policy}`;
	return m.reporter === 'destination' ? 'no AuthorizationPolicy applies' : "admitted by the destination's ztunnel";
}

/** The parenthesis of a mesh flow: the verdict's reason and policy, and what the ztunnel saw. */
export function meshWhy(f: Flow, m: FlowMesh): string {
	const policy = meshPolicy(f, m);
	if (f.verdict === 'DROPPED') return [`${f.dropReason}: ${f.dropReasonDesc ?? ''}`, policy, meshDetail(m)].filter(Boolean).join('; ');
	return `${meshDetail(m)}; ${policy}`;
}

export function summarize(f: Flow): string {
	if (f.mesh) {
		return `${endpointName(f.source)} -> ${endpointName(f.destination)} ${f.direction} ${f.protocol} ${meshType(f.mesh)} ${f.verdict} (${meshWhy(f, f.mesh)})`;
	}
	const l4 = f.protocol === 'TCP' && f.tcpFlags?.length ? `TCP Flags: ${f.tcpFlags.join(', ')}` : f.protocol;
	let why = '';
	if (f.verdict === 'DROPPED') {
		why = ` (${f.dropReason}: ${f.dropReasonDesc}`;
		if (f.isolatedBy?.length) why += `; isolated by ${f.isolatedBy.map(policyRefName).join(', ')}`;
		if (f.suppressed) why += `; ${suppressedText(f.suppressed)}`;
		why += ')';
	} else if (f.verdict === 'AUDIT') {
		why = ` (would be denied; isolated by ${(f.isolatedBy ?? []).map((p) => `${p.namespace}/${p.name}`).join(', ')})`;
	} else if (f.allowedBy) {
		why = ` (allowed by ${f.allowedBy.namespace}/${f.allowedBy.name} ${f.allowedBy.rule ?? ''})`.replace(' )', ')');
	}
	const via = f.destination.service ? ` (service ${f.destination.service.namespace}/${f.destination.service.name}:${f.destination.service.port})` : '';
	return `${endpointName(f.source)} -> ${endpointName(f.destination)}${via} ${f.direction} ${l4} ${f.verdict}${why}`;
}

/** What a flow's `suppressed` count says, in words. */
export function suppressedText(n: number): string {
	return `${n} more refused since the previous report`;
}

/** Flow filters, as `weir observe` and the API take them. */
export interface FlowFilter {
	namespace?: string;
	/** 'name' or 'namespace/name'; matches either end */
	pod?: string;
	verdict?: FlowVerdict;
	port?: number;
	protocol?: string;
	since?: number;
}

export function matchesFilter(f: Flow, q: FlowFilter): boolean {
	const ends = [f.source, f.destination];
	if (q.namespace && !ends.some((e) => e.namespace === q.namespace)) return false;
	if (q.pod) {
		const want = q.pod;
		if (!ends.some((e) => e.pod !== undefined && (want.includes('/') ? `${e.namespace}/${e.pod}` === want : e.pod === want))) return false;
	}
	if (q.verdict && f.verdict !== q.verdict) return false;
	if (q.port !== undefined && !ends.some((e) => e.port === q.port)) return false;
	if (q.protocol && f.protocol.toUpperCase() !== q.protocol.toUpperCase()) return false;
	if (q.since !== undefined && Date.parse(f.time) < q.since) return false;
	return true;
}
