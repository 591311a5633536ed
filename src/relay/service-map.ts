// The service map, aggregated in the relay as flows arrive: one edge per source
// workload -> destination workload, port and protocol, with counts by verdict, the
// drop reasons and the policies that decided. Reply flows (a server's answers) are not
// edges. Bounded: past `maxEdges` the edge seen longest ago is forgotten. An edge counts
// the flows the ztunnel reported over mutual TLS; room is left for golden metrics
// (requests, errors, latency) once it reports L7. Pure.
import type { Flow, FlowEndpoint, MapEdge, MapNode, ServiceMapView } from '../shared/wire.js';
import { policyRefName } from '../observe/flow.js';

interface EdgeState {
	edge: MapEdge;
	last: number;
}

const MAX_POLICIES = 8;

export function mapNodeOf(e: FlowEndpoint): MapNode {
	if (e.pod !== undefined) {
		const name = e.workload ?? e.pod;
		return { id: `${e.namespace ?? ''}/${name}`, kind: 'workload', namespace: e.namespace ?? '', name, labels: e.labels };
	}
	if (e.reserved !== undefined) return { id: `reserved:${e.reserved}`, kind: 'reserved', name: e.reserved, labels: [] };
	return { id: `ip:${e.ip}`, kind: 'ip', name: e.ip, labels: [] };
}

function addPolicy(list: string[], p: string): void {
	if (!list.includes(p) && list.length < MAX_POLICIES) list.push(p);
}

export class ServiceMap {
	private readonly edges = new Map<string, EdgeState>();
	private readonly nodes = new Map<string, MapNode>();
	evicted = 0;

	constructor(readonly maxEdges = 10_000) {}

	get size(): number {
		return this.edges.size;
	}

	add(f: Flow, t: number = Date.parse(f.time)): void {
		if (f.isReply) return;
		const src = mapNodeOf(f.source);
		const dst = mapNodeOf(f.destination);
		const port = f.protocol === 'TCP' || f.protocol === 'UDP' || f.protocol === 'SCTP' ? f.destination.port : undefined;
		const id = `${src.id}|${dst.id}|${port ?? ''}|${f.protocol}`;
		let s = this.edges.get(id);
		if (s) {
			this.edges.delete(id); // re-inserted below: the Map's order is least recently seen first
		} else {
			const edge: MapEdge = {
				id,
				source: src.id,
				destination: dst.id,
				protocol: f.protocol,
				counts: { FORWARDED: 0, DROPPED: 0, AUDIT: 0 },
				dropReasons: {},
				policies: { allowedBy: [], isolatedBy: [] },
				firstSeen: f.time,
				lastSeen: f.time,
			};
			if (port !== undefined) edge.port = port;
			s = { edge, last: t };
			while (this.edges.size >= this.maxEdges) {
				const oldest = this.edges.keys().next().value as string;
				this.edges.delete(oldest);
				this.evicted++;
			}
		}
		this.edges.set(id, s);
		this.nodes.set(src.id, src);
		this.nodes.set(dst.id, dst);
		const e = s.edge;
		e.counts[f.verdict] = (e.counts[f.verdict] ?? 0) + 1;
		if (f.dropReason) e.dropReasons[f.dropReason] = (e.dropReasons[f.dropReason] ?? 0) + 1;
		if (f.allowedBy) addPolicy(e.policies.allowedBy, `${f.allowedBy.namespace}/${f.allowedBy.name}`);
		for (const p of f.isolatedBy ?? []) addPolicy(e.policies.isolatedBy, policyRefName(p));
		if (f.mesh?.security === 'mutual_tls') e.mtls = { flows: (e.mtls?.flows ?? 0) + 1 };
		if (t >= s.last) {
			s.last = t;
			e.lastSeen = f.time;
		}
	}

	/** Edges with an end in one of `namespaces` (all when empty), seen at or after `since`. */
	view(o: { namespaces?: readonly string[]; since?: number } = {}): ServiceMapView {
		const ns = o.namespaces?.length ? new Set(o.namespaces) : undefined;
		const edges: MapEdge[] = [];
		const used = new Set<string>();
		for (const { edge, last } of this.edges.values()) {
			if (o.since !== undefined && last < o.since) continue;
			if (ns) {
				const a = this.nodes.get(edge.source)?.namespace;
				const b = this.nodes.get(edge.destination)?.namespace;
				if (!(a !== undefined && ns.has(a)) && !(b !== undefined && ns.has(b))) continue;
			}
			edges.push(edge);
			used.add(edge.source);
			used.add(edge.destination);
		}
		edges.sort((x, y) => x.id.localeCompare(y.id));
		const nodes = [...used].sort().map((id) => this.nodes.get(id)!);
		return { nodes, edges, evicted: this.evicted };
	}
}
