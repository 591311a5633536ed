// The relay's public API as the UI reads it (GET only, relative URLs: the UI works
// under any prefix the relay is reached through). The shapes of the wire are the
// server's own, src/shared/wire.ts (types only): a change there is checked here too.

import type {
	Flow,
	FlowEndpoint,
	FlowPolicyRef,
	FlowVerdict,
	NamespacesResponse,
	NodeEvent,
	NodesResponse,
	NodeStatusView,
	ServiceMapView,
	StreamLine,
} from '../../src/shared/wire';

export type { Flow, MapEdge, MapNode } from '../../src/shared/wire';
export type Verdict = FlowVerdict;
export type Endpoint = FlowEndpoint;
export type PolicyRef = FlowPolicyRef;
export type NodeStatus = NodeStatusView;
export type ServiceMap = ServiceMapView;

export interface Filters {
	/** empty: all namespaces */
	namespaces: string[];
	verdict: '' | Verdict;
	pod: string;
	label: string;
	port: string;
	protocol: string;
	/** set by clicking a map edge */
	fromWorkload: string;
	toWorkload: string;
	/** leave out traffic from the nodes themselves (kubelet probes, host processes) */
	hideHost: boolean;
}

export const NO_FILTERS: Filters = {
	namespaces: [],
	verdict: '',
	pod: '',
	label: '',
	port: '',
	protocol: '',
	fromWorkload: '',
	toWorkload: '',
	hideHost: true,
};

/** The sources "hide host traffic" leaves out: the node itself and other nodes. */
export const HOST_SOURCES = ['host', 'remote-node'];

export function flowQuery(f: Filters, o: { last: number; follow: boolean }): URLSearchParams {
	const q = new URLSearchParams();
	for (const ns of f.namespaces) q.append('namespace', ns);
	if (f.verdict) q.set('verdict', f.verdict);
	if (f.pod.trim()) q.set('pod', f.pod.trim());
	if (f.label.trim()) q.set('label', f.label.trim());
	if (f.port.trim()) q.set('port', f.port.trim());
	if (f.protocol) q.set('protocol', f.protocol);
	if (f.fromWorkload) q.set('from-workload', f.fromWorkload);
	if (f.toWorkload) q.set('to-workload', f.toWorkload);
	if (f.hideHost) for (const r of HOST_SOURCES) q.append('not-from-reserved', r);
	q.set('last', String(o.last));
	if (o.follow) q.set('follow', 'true');
	return q;
}

async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
	const res = await fetch(path, { signal: signal ?? null, headers: { accept: 'application/json' } });
	if (!res.ok) {
		let msg = `${res.status}`;
		try {
			msg = ((await res.json()) as { message?: string }).message ?? msg;
		} catch {
			// not JSON
		}
		throw new Error(msg);
	}
	return (await res.json()) as T;
}

export const api = {
	nodes: (signal?: AbortSignal) => getJson<NodesResponse>('v1/nodes', signal).then((r) => r.nodes),
	namespaces: (signal?: AbortSignal) => getJson<NamespacesResponse>('v1/namespaces', signal).then((r) => r.namespaces),
	serviceMap: (namespaces: string[], signal?: AbortSignal) => {
		const q = new URLSearchParams();
		for (const ns of namespaces) q.append('namespace', ns);
		return getJson<ServiceMap>(`v1/service-map?${q}`, signal);
	},
};

export type StreamEvent =
	{ kind: 'flow'; flow: Flow } | { kind: 'node'; node: string; state: NodeEvent['state']; error?: string } | { kind: 'lost'; lost: number };

/**
 * Follows GET v1/flows?follow=true: calls `on` for every line until `signal` aborts.
 * Resolves when the stream ends; rejects with the relay's message on a bad query.
 */
export async function followFlows(q: URLSearchParams, on: (e: StreamEvent) => void, signal: AbortSignal): Promise<void> {
	const res = await fetch(`v1/flows?${q}`, { signal });
	if (!res.ok || !res.body) {
		let msg = `${res.status}`;
		try {
			msg = ((await res.json()) as { message?: string }).message ?? msg;
		} catch {
			// not JSON
		}
		throw new Error(msg);
	}
	const reader = res.body.getReader();
	const dec = new TextDecoder();
	let buf = '';
	for (;;) {
		const { value, done } = await reader.read();
		if (done) return;
		buf += dec.decode(value, { stream: true });
		let nl: number;
		while ((nl = buf.indexOf('\n')) >= 0) {
			const line = buf.slice(0, nl);
			buf = buf.slice(nl + 1);
			if (!line) continue;
			const o = JSON.parse(line) as StreamLine;
			if (!('event' in o)) on({ kind: 'flow', flow: o });
			else if (o.event === 'node') on({ kind: 'node', node: o.node, state: o.state, ...(o.error ? { error: o.error } : {}) });
			else if (o.event === 'lost') on({ kind: 'lost', lost: o.lost });
		}
	}
}

export function endpointLabel(e: Endpoint): string {
	if (e.pod) return `${e.namespace}/${e.pod}`;
	if (e.reserved) return `${e.reserved} (${e.ip})`;
	return e.ip;
}

/** The policy that decided, in a few words, for every verdict. */
export function policyText(f: Flow): string {
	const names = (ps?: PolicyRef[]): string => (ps ?? []).map((p) => `${p.namespace}/${p.name}`).join(', ');
	if (f.verdict === 'DROPPED') return f.isolatedBy?.length ? `denied: ${names(f.isolatedBy)}` : '—';
	if (f.verdict === 'AUDIT') return `would deny: ${names(f.isolatedBy)}`;
	if (f.allowedBy) return `allowed: ${f.allowedBy.namespace}/${f.allowedBy.name}${f.allowedBy.rule ? ` ${f.allowedBy.rule}` : ''}`;
	if (f.isReply) return 'reply (allowed connection)';
	return 'no policy applies';
}
