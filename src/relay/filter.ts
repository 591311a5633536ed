// The cluster-wide flow filter, after `hubble observe`'s: every field is a list whose
// values are alternatives (OR), and the fields combine with AND. `namespace`, `pod`,
// `label`, `identity` and `port` match either end of the flow; their `from*` and `to*`
// forms match only the source or only the destination. Pure.
import type { Flow, FlowEndpoint, FlowVerdict } from '../observe/flow.js';

export interface EndpointFilter {
	namespace?: string[];
	/** '[namespace/]pod-name-prefix' (Hubble's --pod: a prefix, since pod names end in hashes) */
	pod?: string[];
	/** label selectors: 'key=value', 'key' (has the key), 'key!=value', '!key'; comma-separated terms all hold */
	label?: string[];
	identity?: number[];
	port?: number[];
	/** workload name, '[namespace/]name' */
	workload?: string[];
	/** a non-pod end: host, remote-node, world, cidr:<prefix> */
	reserved?: string[];
}

export interface RelayFilter {
	/** either end */
	any: EndpointFilter;
	from: EndpointFilter;
	to: EndpointFilter;
	/** flows whose source matches all of it are left out (Hubble's --not); empty: none */
	notFrom?: EndpointFilter;
	/** flows whose destination matches all of it are left out */
	notTo?: EndpointFilter;
	verdict?: FlowVerdict[];
	/** drop reason names (POLICY_DENIED …), any case */
	dropReason?: string[];
	protocol?: string[];
	node?: string[];
	/** ms since the epoch, inclusive */
	since?: number;
	/** ms since the epoch, inclusive */
	until?: number;
	/** false: leave out reply flows (the server's answers) */
	replies?: boolean;
}

export function emptyFilter(): RelayFilter {
	return { any: {}, from: {}, to: {} };
}

function podMatches(e: FlowEndpoint, want: string): boolean {
	if (e.pod === undefined) return false;
	const slash = want.indexOf('/');
	if (slash < 0) return e.pod.startsWith(want);
	return e.namespace === want.slice(0, slash) && e.pod.startsWith(want.slice(slash + 1));
}

function workloadMatches(e: FlowEndpoint, want: string): boolean {
	if (e.workload === undefined) return false;
	const slash = want.indexOf('/');
	if (slash < 0) return e.workload === want;
	return e.namespace === want.slice(0, slash) && e.workload === want.slice(slash + 1);
}

/** One selector ('app=redis,tier!=cache,!debug') against an endpoint's 'key=value' labels. */
export function labelsMatch(labels: readonly string[], selector: string): boolean {
	for (const raw of selector.split(',')) {
		const term = raw.trim();
		if (!term) continue;
		if (term.startsWith('!')) {
			const key = term.slice(1);
			if (labels.some((l) => l.slice(0, l.indexOf('=')) === key)) return false;
			continue;
		}
		const ne = term.indexOf('!=');
		if (ne >= 0) {
			if (labels.includes(`${term.slice(0, ne)}=${term.slice(ne + 2)}`)) return false;
			continue;
		}
		const eq = term.indexOf('=');
		if (eq >= 0) {
			if (!labels.includes(term.replace(/==?/, '='))) return false;
			continue;
		}
		if (!labels.some((l) => l.slice(0, l.indexOf('=')) === term)) return false;
	}
	return true;
}

function some<T>(wanted: readonly T[] | undefined, test: (w: T) => boolean): boolean {
	return wanted === undefined || wanted.length === 0 || wanted.some(test);
}

/** Whether an endpoint satisfies every field of `f` (fields absent or empty always hold). */
export function endpointMatches(e: FlowEndpoint, f: EndpointFilter): boolean {
	return (
		some(f.namespace, (ns) => e.namespace === ns) &&
		some(f.pod, (p) => podMatches(e, p)) &&
		some(f.workload, (w) => workloadMatches(e, w)) &&
		some(f.reserved, (r) => e.reserved === r) &&
		some(f.label, (sel) => labelsMatch(e.labels, sel)) &&
		some(f.identity, (id) => e.identity === id) &&
		some(f.port, (p) => e.port === p)
	);
}

function anyEndMatches(flow: Flow, f: EndpointFilter): boolean {
	const ends = [flow.source, flow.destination];
	const field = <T>(wanted: readonly T[] | undefined, test: (e: FlowEndpoint, w: T) => boolean): boolean => some(wanted, (w) => ends.some((e) => test(e, w)));
	return (
		field(f.namespace, (e, ns) => e.namespace === ns) &&
		field(f.pod, podMatches) &&
		field(f.workload, workloadMatches) &&
		field(f.reserved, (e, r) => e.reserved === r) &&
		field(f.label, (e, sel) => labelsMatch(e.labels, sel)) &&
		field(f.identity, (e, id) => e.identity === id) &&
		field(f.port, (e, p) => e.port === p)
	);
}

function isEmpty(f: EndpointFilter): boolean {
	return Object.values(f).every((v) => v === undefined || (Array.isArray(v) && v.length === 0));
}

/** `time` is the flow's time in ms when the caller has it parsed already. */
export function flowMatches(flow: Flow, q: RelayFilter, time: number = Date.parse(flow.time)): boolean {
	if (q.since !== undefined && time < q.since) return false;
	if (q.until !== undefined && time > q.until) return false;
	if (q.replies === false && flow.isReply) return false;
	if (!some(q.verdict, (v) => flow.verdict === v)) return false;
	if (!some(q.dropReason, (r) => (flow.dropReason ?? '').toUpperCase() === r.toUpperCase())) return false;
	if (!some(q.protocol, (p) => flow.protocol.toUpperCase() === p.toUpperCase())) return false;
	if (!some(q.node, (n) => flow.node === n)) return false;
	if (q.notFrom && !isEmpty(q.notFrom) && endpointMatches(flow.source, q.notFrom)) return false;
	if (q.notTo && !isEmpty(q.notTo) && endpointMatches(flow.destination, q.notTo)) return false;
	return anyEndMatches(flow, q.any) && endpointMatches(flow.source, q.from) && endpointMatches(flow.destination, q.to);
}
