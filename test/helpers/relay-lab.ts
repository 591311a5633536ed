// A relay fed by real node observers on loopback: each "node" is the agent's own
// observer API (src/observe/api.ts over a FlowRing) on its own port, and the relay is
// weir-controller's composition root with those nodes given statically. Flows are made
// the way the segregation scenario's are: apache -> redis dropped by
// d-redis/redis-allow-c-app, app -> redis allowed by it, ingress -> apache open.
import Fastify, { type FastifyInstance } from 'fastify';
import pino from 'pino';
import { join } from 'node:path';
import { observeApi } from '../../src/observe/api.js';
import { summarize, type Flow, type FlowEndpoint } from '../../src/observe/flow.js';
import { FlowRing } from '../../src/observe/flow-ring.js';
import { buildController, type Controller, type ControllerConfig } from '../../src/controller/app.js';
import { repoRoot } from '../../src/shared/package.js';
import { waitFor } from '../../hack/cluster/exec.js';
import { ndjsonLines } from '../../src/shared/ndjson.js';

export interface FakeNode {
	name: string;
	ring: FlowRing;
	port: number;
	url: string;
	app: FastifyInstance;
	/** stops the observer (the node "dies"); its ring is kept */
	kill(): Promise<void>;
	/** starts the observer again on the same port, with the same ring */
	revive(): Promise<void>;
}

async function serve(ring: FlowRing, port: number): Promise<FastifyInstance> {
	const app = Fastify({ logger: false, forceCloseConnections: true });
	await app.register(observeApi, { ring });
	app.get('/healthz', async () => ({ ok: true }));
	await app.listen({ host: '127.0.0.1', port });
	return app;
}

export async function startNode(name: string, capacity = 8192): Promise<FakeNode> {
	const ring = new FlowRing(capacity);
	let app = await serve(ring, 0);
	const a = app.server.address();
	const port = typeof a === 'object' && a ? a.port : 0;
	const n: FakeNode = {
		name,
		ring,
		port,
		url: `http://127.0.0.1:${port}`,
		app,
		async kill() {
			await n.app.close();
		},
		async revive() {
			app = await serve(ring, port);
			n.app = app;
		},
	};
	return n;
}

export const PODS = {
	ingress: { namespace: 'a-ingress', pod: 'ingress-5d9c7b8f6-k2x4q', workload: 'ingress', ip: '10.244.0.11', identity: 40101, labels: ['app=ingress'] },
	apache: { namespace: 'b-apache', pod: 'apache-7c6cf4b867-2whdr', workload: 'apache', ip: '10.244.0.12', identity: 40102, labels: ['app=apache'] },
	app: { namespace: 'c-app', pod: 'app-6b8d5f7c9-x7lpn', workload: 'app', ip: '10.244.0.13', identity: 40103, labels: ['app=app'] },
	redis: { namespace: 'd-redis', pod: 'redis-6978fc44dd-blcjx', workload: 'redis', ip: '10.244.1.21', identity: 40104, labels: ['app=redis'] },
} as const;

type PodName = keyof typeof PODS;

function end(p: PodName, port: number): FlowEndpoint {
	const x = PODS[p];
	return { ip: x.ip, port, identity: x.identity, namespace: x.namespace, pod: x.pod, workload: x.workload, labels: [...x.labels] };
}

export interface FlowSpec {
	from: PodName;
	to: PodName;
	port: number;
	node: string;
	time: number;
	sport?: number;
	reply?: boolean;
}

/** A flow as the agent records it, with the scenario's policy outcome for the pair. */
export function scenarioFlow(s: FlowSpec): Flow {
	const toRedis = s.to === 'redis';
	const allowed = !toRedis || (s.from === 'app' && s.port === 6379);
	const f: Flow = {
		time: new Date(s.time).toISOString(),
		node: s.node,
		verdict: allowed ? 'FORWARDED' : 'DROPPED',
		direction: 'ingress',
		isReply: s.reply ?? false,
		ipVersion: 'IPv4',
		protocol: 'TCP',
		tcpFlags: ['SYN'],
		source: end(s.from, s.sport ?? 40000 + (s.time % 20000)),
		destination: end(s.to, s.port),
		match: allowed ? (toRedis ? 'l3-l4' : 'not-isolated') : 'none',
		summary: '',
	};
	if (!allowed) {
		f.dropReason = 'POLICY_DENIED';
		f.dropReasonDesc = 'no NetworkPolicy rule allows this connection';
		f.isolatedBy = [{ kind: 'NetworkPolicy', namespace: 'd-redis', name: 'redis-allow-c-app' }];
	} else if (toRedis) {
		f.allowedBy = { kind: 'NetworkPolicy', namespace: 'd-redis', name: 'redis-allow-c-app', rule: 'ingress[0]' };
	}
	f.summary = summarize(f);
	return f;
}

export interface RelayLab {
	nodes: FakeNode[];
	controller: Controller;
	url: string;
	stop(): Promise<void>;
}

export async function startRelayLab(nodeNames: string[] = ['n1', 'n2'], over: Partial<ControllerConfig> = {}): Promise<RelayLab> {
	const nodes = await Promise.all(nodeNames.map((n) => startNode(n)));
	const cfg: ControllerConfig = {
		host: '127.0.0.1',
		port: 0,
		namespace: 'weir-system',
		nodes: new Map(nodes.map((n) => [n.name, n.url])),
		via: 'direct',
		agentPort: 9962,
		uiDir: join(repoRoot, 'ui', 'dist'),
		historySize: 20_000,
		maxFollowers: 64,
		followQueue: 2048,
		mergeWindowMs: 300,
		mergeCapacity: 4096,
		mapEdges: 10_000,
		...over,
	};
	const controller = await buildController(cfg, pino({ level: process.env['WEIR_TEST_LOG'] ?? 'silent' }));
	const url = await controller.start();
	return {
		nodes,
		controller,
		url,
		async stop() {
			await controller.stop();
			await Promise.all(nodes.map((n) => n.app.close()));
		},
	};
}

/** Polls until `fn` returns a value (not undefined), or fails after `ms` (hack/cluster's waitFor, polling faster). */
export function until<T>(what: string, ms: number, fn: () => Promise<T | undefined> | T | undefined, every = 50): Promise<T> {
	return waitFor(what, ms, async () => fn(), every);
}

/**
 * Reads an NDJSON stream line by line until `stop` returns true or the time runs out.
 * `stop` sees the lines so far after each line; with `forget`, only the last one is kept.
 */
export async function readLines(
	url: string,
	stop: (lines: Array<Record<string, unknown>>) => boolean,
	ms = 5000,
	forget = false,
): Promise<Array<Record<string, unknown>>> {
	const ac = new AbortController();
	const timer = setTimeout(() => ac.abort(), ms);
	const lines: Array<Record<string, unknown>> = [];
	try {
		const res = await fetch(url, { signal: ac.signal });
		if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
		for await (const l of ndjsonLines(res.body as unknown as AsyncIterable<Uint8Array>)) {
			if (forget) lines.length = 0;
			lines.push(l);
			if (stop(lines)) return lines;
		}
	} catch (err) {
		if (!ac.signal.aborted) throw err;
	} finally {
		clearTimeout(timer);
		ac.abort();
	}
	return lines;
}

/** The scenario's traffic pattern at its nodes: redis on n2, the rest on n1. */
export const SCENARIO_TRAFFIC: ReadonlyArray<Omit<FlowSpec, 'time' | 'node'>> = [
	{ from: 'app', to: 'redis', port: 6379 },
	{ from: 'apache', to: 'redis', port: 6379 },
	{ from: 'ingress', to: 'apache', port: 8080 },
	{ from: 'apache', to: 'app', port: 8080 },
];

/** Adds `perSecond` scenario flows a second to the lab's nodes until stopped (batches every 20 ms). */
export function startTraffic(lab: RelayLab, perSecond: number, pattern = SCENARIO_TRAFFIC): { stop(): void; sent(): number } {
	let sent = 0;
	const started = Date.now();
	const nodeFor = (s: Omit<FlowSpec, 'time' | 'node'>): FakeNode => (s.to === 'redis' ? lab.nodes[lab.nodes.length - 1]! : lab.nodes[0]!);
	const t = setInterval(() => {
		const due = Math.floor(((Date.now() - started) / 1000) * perSecond);
		const now = Date.now();
		for (; sent < due; sent++) {
			const s = pattern[sent % pattern.length]!;
			const n = nodeFor(s);
			n.ring.add(scenarioFlow({ ...s, node: n.name, time: now, sport: 1024 + (sent % 60000) }));
		}
	}, 20);
	return { stop: () => clearInterval(t), sent: () => sent };
}
