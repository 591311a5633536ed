// `weir observe`: flows from a node agent's observer API, like `hubble observe`.
import { Command, InvalidArgumentError, Option } from 'commander';
import { Flow } from '../observe/flow.js';
import { DEFAULTS } from '../shared/defaults.js';

export const DEFAULT_SERVER = process.env['WEIR_OBSERVER'] ?? `http://127.0.0.1:${DEFAULTS.observerPort}`;

function port(v: string): number {
	const n = Number(v);
	if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is 0-65535');
	return n;
}

function positive(v: string): number {
	const n = Number(v);
	if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('a whole number');
	return n;
}

export function formatFlow(f: Flow): string {
	const t = new Date(f.time);
	const hh = t.toISOString().slice(11, 23);
	return `${hh} [${f.node}] ${f.summary}`;
}

interface ObserveOpts {
	server: string;
	namespace?: string;
	pod?: string;
	verdict?: string;
	port?: number;
	protocol?: string;
	last: number;
	follow?: boolean;
	output: 'compact' | 'json';
	since?: string;
}

async function observe(opts: ObserveOpts, out: (s: string) => void): Promise<void> {
	const q = new URLSearchParams();
	if (opts.namespace) q.set('namespace', opts.namespace);
	if (opts.pod) q.set('pod', opts.pod);
	if (opts.verdict) q.set('verdict', opts.verdict);
	if (opts.port !== undefined) q.set('port', String(opts.port));
	if (opts.protocol) q.set('protocol', opts.protocol);
	if (opts.since) q.set('since', opts.since);
	q.set('limit', String(opts.last));
	if (opts.follow) q.set('follow', 'true');
	const url = `${opts.server.replace(/\/$/, '')}/v1/flows?${q}`;
	let res: Response;
	try {
		res = await fetch(url);
	} catch (err) {
		throw new Error(
			`cannot reach the Weir observer at ${opts.server} (${(err as Error).cause ?? (err as Error).message}): is the agent running? set --server or WEIR_OBSERVER`,
		);
	}
	if (!res.ok) {
		const body = await res.text();
		throw new Error(`observer answered ${res.status}: ${body}`);
	}
	const print = (f: Flow): void => out(opts.output === 'json' ? JSON.stringify(f) : formatFlow(f));
	if (!opts.follow) {
		const body = (await res.json()) as { flows: Flow[] };
		body.flows.forEach(print);
		return;
	}
	const decoder = new TextDecoder();
	let buf = '';
	for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
		buf += decoder.decode(chunk, { stream: true });
		let nl: number;
		while ((nl = buf.indexOf('\n')) >= 0) {
			const line = buf.slice(0, nl);
			buf = buf.slice(nl + 1);
			if (line) print(JSON.parse(line) as Flow);
		}
	}
}

export function observeCommand(out: (s: string) => void): Command {
	return new Command('observe')
		.description('show flows seen by a node: allowed and dropped, with reason and policy')
		.option('--server <url>', 'observer API of a node agent', DEFAULT_SERVER)
		.option('-n, --namespace <ns>', 'flows from or to this namespace')
		.option('--pod <[ns/]name>', 'flows from or to this pod')
		.addOption(new Option('--verdict <verdict>', 'only this verdict').choices(['FORWARDED', 'DROPPED', 'AUDIT']))
		.option('--port <port>', 'flows from or to this port', port)
		.option('--protocol <proto>', 'TCP, UDP, SCTP or ICMPv4')
		.option('--since <time>', 'only flows after this ISO time')
		.option('--last <n>', 'how many past flows to show', positive, 20)
		.option('-f, --follow', 'keep printing flows as they happen')
		.addOption(new Option('-o, --output <format>', 'output format').choices(['compact', 'json']).default('compact'))
		.action(async (opts: ObserveOpts) => observe(opts, out));
}
