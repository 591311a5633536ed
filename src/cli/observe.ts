// `weir observe`: flows, like `hubble observe`. By default from the cluster-wide relay
// (weir-controller) through the API server's service proxy; `--server URL` reads an
// observer API directly: the relay through a port-forward, or one node agent (whose
// API filters less: the CLI applies every filter itself too, so the answer is the
// same either way). Every verdict names its policy: the rule that allowed the flow,
// the policies that isolate the pod a drop was for, or that no policy applies; a
// connection the ztunnel proxied, its identities, bytes and AuthorizationPolicy.
import { Command, InvalidArgumentError, Option } from 'commander';
import { endpointName, meshType, meshWhy, policyRefName, suppressedText } from '../observe/flow.js';
import type { Flow, FlowsResponse } from '../shared/wire.js';
import { flowMatches, type RelayFilter } from '../relay/filter.js';
import { toRequest, type FlowQuery } from '../relay/query.js';
import { DEFAULTS, RELAY_DEFAULTS } from '../shared/defaults.js';
import { ndjsonLines } from '../shared/ndjson.js';
import { bodyText, directEndpoint, kubeRelayEndpoint, loadKubeConfig, type ObserverEndpoint } from './relay-client.js';

/** A node agent on this host, when WEIR_OBSERVER is not set (what --server meant before the relay). */
export const DEFAULT_SERVER = process.env['WEIR_OBSERVER'] ?? `http://127.0.0.1:${DEFAULTS.observerPort}`;

function port(v: string, prev: number[] = []): number[] {
	const n = Number(v);
	if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is 0-65535');
	return [...prev, n];
}

function identity(v: string, prev: number[] = []): number[] {
	const n = Number(v);
	if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError('an identity is a whole number');
	return [...prev, n];
}

function count(v: string): number {
	const n = Number(v);
	if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('a whole number');
	return n;
}

function many(v: string, prev: string[] = []): string[] {
	return [...prev, v];
}

const VERDICTS = ['FORWARDED', 'DROPPED', 'AUDIT'];

function verdict(v: string, prev: string[] = []): string[] {
	const c = VERDICTS.find((x) => x === v.toUpperCase());
	if (!c) throw new InvalidArgumentError(`one of ${VERDICTS.join(', ')}`);
	return [...prev, c];
}

/** '2026-01-01T12:00:00Z', or a time ago: '30s', '5m', '2h', '1d' (Hubble's --since). */
export function parseTime(v: string, now: number = Date.now()): string {
	const ago = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v);
	if (ago) {
		const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[ago[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
		return new Date(now - Number(ago[1]) * unit).toISOString();
	}
	const t = Date.parse(v);
	if (!Number.isFinite(t) || !/[zZ]|[+-]\d\d:?\d\d$/.test(v))
		throw new InvalidArgumentError('an RFC 3339 time with a zone (2026-01-01T12:00:00Z) or a time ago (30s, 5m, 2h)');
	return new Date(t).toISOString();
}

function time(v: string): string {
	return parseTime(v);
}

/** What decided the verdict, for every verdict. */
export function policyOf(f: Flow): string {
	if (f.mesh) return meshWhy(f, f.mesh);
	const names = (ps: Flow['isolatedBy']): string => (ps ?? []).map(policyRefName).join(', ');
	if (f.verdict === 'DROPPED') {
		const why = `${f.dropReason ?? 'DROPPED'}${f.dropReasonDesc ? `: ${f.dropReasonDesc}` : ''}${f.suppressed ? `; ${suppressedText(f.suppressed)}` : ''}`;
		return f.isolatedBy?.length ? `${why}; isolated by ${names(f.isolatedBy)}` : why;
	}
	if (f.verdict === 'AUDIT') return `would be denied; isolated by ${names(f.isolatedBy) || '?'}`;
	if (f.allowedBy) return `allowed by ${f.allowedBy.namespace}/${f.allowedBy.name}${f.allowedBy.rule ? ` ${f.allowedBy.rule}` : ''}`;
	if (f.isReply) return 'reply of an allowed connection';
	return 'no policy isolates either end';
}

function l4(f: Flow): string {
	if (f.mesh) return `${f.protocol} ${meshType(f.mesh)}`;
	if (f.protocol === 'TCP' && f.tcpFlags?.length) return `TCP Flags: ${f.tcpFlags.join(', ')}`;
	if (f.icmp) return `${f.protocol} type ${f.icmp.type} code ${f.icmp.code}`;
	return f.protocol;
}

function via(f: Flow): string {
	const s = f.destination.service;
	return s ? ` (service ${s.namespace}/${s.name}:${s.port})` : '';
}

function clock(f: Flow): string {
	return new Date(f.time).toISOString().slice(11, 23);
}

/** One line, like hubble observe's compact output. */
export function formatFlow(f: Flow): string {
	return `${clock(f)} [${f.node}] ${endpointName(f.source)} -> ${endpointName(f.destination)}${via(f)} ${f.direction}${f.isReply ? ' reply' : ''} ${l4(f)} ${f.verdict} (${policyOf(f)})`;
}

export const TABLE_HEADER = ['TIME', 'NODE', 'SOURCE', 'DESTINATION', 'TYPE', 'VERDICT', 'POLICY'];

export function tableRow(f: Flow): string[] {
	return [clock(f), f.node, endpointName(f.source), `${endpointName(f.destination)}${via(f)}`, `${f.direction} ${l4(f)}`, f.verdict, policyOf(f)];
}

/** Columns padded to the widest cell of `rows` (the header first). */
export function formatTable(rows: string[][]): string[] {
	const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
	return rows.map((r) =>
		r
			.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
			.join('  ')
			.trimEnd(),
	);
}

export interface ObserveOpts {
	server?: string;
	kubeconfig?: string;
	weirNamespace: string;
	namespace?: string[];
	pod?: string[];
	label?: string[];
	identity?: number[];
	port?: number[];
	workload?: string[];
	fromNamespace?: string[];
	fromPod?: string[];
	fromLabel?: string[];
	fromIdentity?: number[];
	fromPort?: number[];
	fromWorkload?: string[];
	toNamespace?: string[];
	toPod?: string[];
	toLabel?: string[];
	toIdentity?: number[];
	toPort?: number[];
	toWorkload?: string[];
	verdict?: string[];
	dropReason?: string[];
	protocol?: string[];
	nodeName?: string[];
	since?: string;
	until?: string;
	first?: number;
	last?: number;
	follow?: boolean;
	output: 'compact' | 'json' | 'table';
}

/** The options as the relay's query (names as its API takes them). */
export function relayQuery(o: ObserveOpts): URLSearchParams {
	const q = new URLSearchParams();
	const add = (name: string, vs: ReadonlyArray<string | number> | undefined): void => vs?.forEach((v) => q.append(name, String(v)));
	for (const [prefix, e] of [
		['', { namespace: o.namespace, pod: o.pod, label: o.label, identity: o.identity, port: o.port, workload: o.workload }],
		['from-', { namespace: o.fromNamespace, pod: o.fromPod, label: o.fromLabel, identity: o.fromIdentity, port: o.fromPort, workload: o.fromWorkload }],
		['to-', { namespace: o.toNamespace, pod: o.toPod, label: o.toLabel, identity: o.toIdentity, port: o.toPort, workload: o.toWorkload }],
	] as const) {
		for (const [k, v] of Object.entries(e)) add(`${prefix}${k}`, v);
	}
	add('verdict', o.verdict);
	add('drop-reason', o.dropReason);
	add('protocol', o.protocol);
	add('node', o.nodeName);
	if (o.since) q.set('since', o.since);
	if (o.until) q.set('until', o.until);
	if (o.first !== undefined) q.set('first', String(o.first));
	else if (o.last !== undefined) q.set('last', String(o.last));
	else if (!o.since) q.set('last', String(o.follow ? 0 : 20));
	if (o.follow) q.set('follow', 'true');
	return q;
}

/** The same filter, applied by the CLI itself (a node agent's API knows only some of it). */
export function localFilter(q: URLSearchParams): RelayFilter {
	const query: Record<string, unknown> = {};
	for (const k of new Set(q.keys())) {
		const vs = q.getAll(k);
		const numeric = /(^|-)(identity|port)$/.test(k);
		if (['since', 'until'].includes(k)) query[k] = vs[0];
		else if (!['first', 'last', 'follow'].includes(k)) query[k] = numeric ? vs.map(Number) : vs;
	}
	return toRequest(query as FlowQuery).filter;
}

/** A node agent's query: what its API takes (one value per filter), the rest is filtered here. */
function nodeQuery(q: URLSearchParams): URLSearchParams {
	const n = new URLSearchParams();
	for (const k of ['namespace', 'verdict', 'port', 'protocol']) {
		const vs = q.getAll(k);
		if (vs.length === 1) n.set(k, vs[0]!);
	}
	if (q.has('since')) n.set('since', q.get('since')!);
	n.set('limit', q.has('first') || q.has('until') || q.has('since') ? '100000' : (q.get('last') ?? '20'));
	if (q.has('follow')) n.set('follow', 'true');
	return n;
}

async function isRelay(ep: ObserverEndpoint): Promise<boolean> {
	try {
		const res = await ep.get('/v1/relay', { timeoutMs: 5000 });
		res.resume();
		return res.statusCode === 200;
	} catch {
		return false;
	}
}

function endpointFor(o: ObserveOpts): ObserverEndpoint {
	if (o.server) return directEndpoint(o.server);
	if (process.env['WEIR_OBSERVER']) return directEndpoint(process.env['WEIR_OBSERVER']);
	return kubeRelayEndpoint(loadKubeConfig(o.kubeconfig), o.weirNamespace);
}

export async function observe(o: ObserveOpts, out: (s: string) => void, err: (s: string) => void = (s) => void process.stderr.write(`${s}\n`)): Promise<void> {
	const ep = endpointFor(o);
	const q = relayQuery(o);
	const filter = localFilter(q);
	const relay = await isRelay(ep);
	const query = relay ? q : nodeQuery(q);
	let res;
	try {
		res = await ep.get(`/v1/flows?${query}`);
	} catch (e) {
		const cause = (e as Error & { cause?: unknown }).cause ?? (e as Error).message;
		throw new Error(`cannot reach the Weir observer at ${ep.where} (${String(cause)}): ${ep.hint}`);
	}
	if (res.statusCode !== 200) {
		const body = await bodyText(res);
		let msg = body;
		try {
			msg = (JSON.parse(body) as { message?: string }).message ?? body;
		} catch {
			// not JSON: the body as it is
		}
		throw new Error(`${ep.where} answered ${res.statusCode}: ${msg.trim().slice(0, 500)}`);
	}
	const rows: string[][] = [TABLE_HEADER];
	let shown = 0;
	const print = (f: Flow): void => {
		if (!relay && !flowMatches(f, filter)) return;
		shown++;
		if (o.output === 'json') out(JSON.stringify(f));
		else if (o.output === 'table' && !o.follow) rows.push(tableRow(f));
		else if (o.output === 'table') out(formatTable([TABLE_HEADER.map(() => ''), tableRow(f)])[1]!);
		else out(formatFlow(f));
	};
	const notice = (l: Record<string, unknown>): void => {
		if (l['event'] === 'node' && l['state'] === 'unavailable')
			err(`weir: node ${l['node']} is unavailable: ${l['error'] ?? ''} (its flows are missing until it returns)`);
		else if (l['event'] === 'node' && l['state'] === 'connected') err(`weir: node ${l['node']} is back`);
		else if (l['event'] === 'lost') err(`weir: ${l['lost']} flows lost: ${l['reason'] ?? ''}`);
	};
	if (!o.follow) {
		const body = JSON.parse(await bodyText(res)) as FlowsResponse;
		let flows = body.flows;
		if (!relay && o.first !== undefined) flows = flows.filter((f) => flowMatches(f, filter)).slice(0, o.first);
		else if (!relay && o.last !== undefined) flows = flows.filter((f) => flowMatches(f, filter)).slice(-o.last);
		flows.forEach(print);
		for (const n of body.nodes ?? []) notice({ event: 'node', node: n.name, state: n.state, error: n.error });
		if (o.output === 'table' && shown) for (const l of formatTable(rows)) out(l);
		return;
	}
	if (o.output === 'table') out(TABLE_HEADER.join('  '));
	try {
		for await (const l of ndjsonLines(res as AsyncIterable<Buffer>)) {
			if (l['event'] !== undefined) notice(l);
			else print(l as unknown as Flow);
		}
	} catch (e) {
		throw new Error(`the flow stream from ${ep.where} broke (${(e as Error).message})`, { cause: e });
	}
}

export function observeCommand(out: (s: string) => void): Command {
	return new Command('observe')
		.description('show flows, allowed and dropped, with the reason and the policy (cluster-wide through the relay, or one observer with --server)')
		.option('--server <url>', 'an observer API to read directly: the relay (port-forward) or a node agent (e.g. http://127.0.0.1:9962)')
		.option('--kubeconfig <path>', 'kubeconfig for the relay (default: $KUBECONFIG or ~/.kube/config)')
		.option('--weir-namespace <ns>', "Weir's namespace (the relay Service)", RELAY_DEFAULTS.namespace)
		.option('-n, --namespace <ns>', 'flows from or to this namespace (repeatable)', many)
		.option('--pod <[ns/]name>', 'flows from or to this pod: a name prefix (repeatable)', many)
		.option('-l, --label <selector>', 'flows from or to pods with these labels, e.g. app=redis (repeatable)', many)
		.option('--identity <id>', 'flows from or to this security identity (repeatable)', identity)
		.option('--port <port>', 'flows from or to this port (repeatable)', port)
		.option('--workload <[ns/]name>', 'flows from or to this workload (repeatable)', many)
		.option('--from-namespace <ns>', 'flows from this namespace', many)
		.option('--from-pod <[ns/]name>', 'flows from this pod', many)
		.option('--from-label <selector>', 'flows from pods with these labels', many)
		.option('--from-identity <id>', 'flows from this identity', identity)
		.option('--from-port <port>', 'flows from this port', port)
		.option('--from-workload <[ns/]name>', 'flows from this workload', many)
		.option('--to-namespace <ns>', 'flows to this namespace', many)
		.option('--to-pod <[ns/]name>', 'flows to this pod', many)
		.option('--to-label <selector>', 'flows to pods with these labels', many)
		.option('--to-identity <id>', 'flows to this identity', identity)
		.option('--to-port <port>', 'flows to this port', port)
		.option('--to-workload <[ns/]name>', 'flows to this workload', many)
		.option('--verdict <verdict>', 'FORWARDED, DROPPED or AUDIT (repeatable)', verdict)
		.option('--drop-reason <name>', 'a drop reason, e.g. POLICY_DENIED (repeatable)', many)
		.option('--protocol <proto>', 'TCP, UDP, SCTP or ICMPv4 (repeatable)', many)
		.option('--node-name <node>', 'flows seen on this node (repeatable)', many)
		.option('--since <time>', 'flows at or after this time: RFC 3339 or a time ago (30s, 5m, 2h)', time)
		.option('--until <time>', 'flows at or before this time (not with --follow)', time)
		.option('--first <n>', 'the oldest n flows', count)
		.option('--last <n>', 'the newest n flows (default 20; with --follow, 0)', count)
		.option('-f, --follow', 'keep printing flows as they happen')
		.addOption(new Option('-o, --output <format>', 'output format').choices(['compact', 'json', 'table']).default('compact'))
		.action(async (opts: ObserveOpts) => observe(opts, out));
}
