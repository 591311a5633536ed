// The ztunnel's connections as the node's flows: the ztunnel's flow reporter
// (src/ztunnel/flows.ts) writes one record per connection event to a real unix socket
// in a temp dir, where the agent's side (src/agent/mesh-flows.ts over
// src/observe/mesh-flow-socket.ts) checks it and adds it to a flow ring served by the
// observer API. An agent restart, malformed lines, the queue's bound; real HBONE
// connections of the in-process two-node lab reported by both ztunnels; the CLI's
// lines for them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Fastify from 'fastify';
import pino from 'pino';
import { Registry } from 'prom-client';
import { parseAllDocuments } from 'yaml';
import { meshFlowSocket, type MeshFlowMetrics } from '../../src/agent/mesh-flows.js';
import { formatFlow, tableRow } from '../../src/cli/observe.js';
import { buildCli } from '../../src/cli/program.js';
import { observeApi } from '../../src/observe/api.js';
import { FlowIndex } from '../../src/observe/flow-index.js';
import { FlowRing } from '../../src/observe/flow-ring.js';
import { formatBytes, formatDuration, type Flow } from '../../src/observe/flow.js';
import { meshFlow } from '../../src/observe/mesh-flow.js';
import { ServiceMap } from '../../src/relay/service-map.js';
import { DEFAULTS } from '../../src/shared/defaults.js';
import { parseMeshFlowRecord, type MeshFlowRecord } from '../../src/shared/mesh-flow-record.js';
import { repoRoot } from '../../src/shared/package.js';
import { DEFAULT_ZTUNNEL_CONFIG } from '../../src/ztunnel/app.js';
import { FlowReporter, meshDropReason, meshFlowRecord } from '../../src/ztunnel/flows.js';
import { fanOut, type ConnectionInfo, type ConnectionObserver } from '../../src/ztunnel/proxy/connections.js';
import { HboneLab, TD, labState, podObject, readAll, waitFor, type LabPod } from '../helpers/hbone-lab.js';

const PODS: LabPod[] = [
	{ ns: 'x', name: 'client', sa: 'client', node: 'a', ip: '127.0.1.1' },
	{ ns: 'x', name: 'other', sa: 'other', node: 'a', ip: '127.0.1.3' },
	{ ns: 'y', name: 'server', sa: 'server', node: 'b', ip: '127.0.1.2' },
];
const id = (ns: string, sa: string): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`;
const quiet = pino({ level: 'silent' });
const state = labState(PODS);
/** security identities the agent's datapath would give the pods */
const IDENTITIES: Record<string, number> = { '127.0.1.1': 300, '127.0.1.2': 301, '127.0.1.3': 302 };

function tempDir(t: { after(fn: () => void): void }): string {
	const dir = mkdtempSync(join(tmpdir(), 'weir-ztflows-'));
	t.after(() => rmSync(dir, { recursive: true, force: true }));
	return dir;
}

/** The agent's view of the pods (its flow index), as after a policy run. */
function flowIndex(node: string): FlowIndex {
	const index = new FlowIndex(node);
	index.update(PODS.map(podObject), {
		rule: () => undefined,
		isolatedBy: () => [],
		reservedName: () => undefined,
		identityOf: (ip) => IDENTITIES[ip],
	});
	return index;
}

class CountingMetrics implements MeshFlowMetrics {
	flows = 0;
	readonly records = { accepted: 0, malformed: 0 };
	flow(): void {
		this.flows++;
	}
	meshRecord(result: 'accepted' | 'malformed'): void {
		this.records[result]++;
	}
}

interface Warned {
	o: Record<string, unknown>;
	msg: string;
}

/** The agent's side: its socket feeding a flow ring. */
async function agentSide(path: string, node = 'b', now?: () => number) {
	const ring = new FlowRing(10_000);
	const metrics = new CountingMetrics();
	const warned: Warned[] = [];
	const log = { info: () => undefined, warn: (o: object, msg: string) => void warned.push({ o: o as Record<string, unknown>, msg }) };
	const server = meshFlowSocket({ path, ctx: flowIndex(node).context(), flows: ring, metrics, log, ...(now ? { now } : {}) });
	await server.start();
	return { ring, metrics, warned, server };
}

function reporter(path: string, node: string, o: { maxQueue?: number; registry?: Registry } = {}): FlowReporter {
	return new FlowReporter({ socketPath: path, node, log: quiet, backoffMs: { initial: 10, max: 50 }, ...o });
}

/** An inbound connection as node b's ztunnel sees it, from x/client (or `from`) to y/server:8080. */
function inbound(o: { from?: string; policy?: string } = {}): ConnectionInfo {
	const src = state.byIp(o.from ?? '127.0.1.1')!;
	const dst = state.byIp('127.0.1.2')!;
	return {
		direction: 'inbound',
		source: { ip: src.ip, port: 0, identity: src.identity, workload: src },
		destination: { ip: dst.ip, port: 8080, identity: dst.identity, workload: dst },
		security: 'mutual_tls',
		...(o.policy ? { policy: o.policy } : {}),
	};
}

function outbound(o: { from?: string; port?: number; policy?: string; status?: number } = {}): ConnectionInfo {
	const src = state.byIp(o.from ?? '127.0.1.1')!;
	const dst = state.byIp('127.0.1.2')!;
	return {
		direction: 'outbound',
		source: { ip: src.ip, port: o.port ?? 43210, identity: src.identity, workload: src },
		destination: { ip: dst.ip, port: 8080, identity: dst.identity, workload: dst },
		security: 'mutual_tls',
		node: '127.0.0.12',
		...(o.policy ? { policy: o.policy } : {}),
		...(o.status !== undefined ? { hboneStatus: o.status } : {}),
	};
}

async function apiFlows(ring: FlowRing, query = ''): Promise<Flow[]> {
	const app = Fastify();
	await app.register(observeApi, { ring });
	try {
		const r = await app.inject({ url: `/v1/flows${query}` });
		assert.equal(r.statusCode, 200);
		return (r.json() as { flows: Flow[] }).flows;
	} finally {
		await app.close();
	}
}

test('records over a real unix socket are flows of the agent’s node: identities, bytes, duration, the AuthorizationPolicy', async (t) => {
	const path = join(tempDir(t), 'ztunnel', 'flows.sock');
	const agent = await agentSide(path);
	t.after(() => agent.server.close());
	assert.equal(statSync(path).mode & 0o777, 0o600, 'the socket is its owner’s only');
	const z = reporter(path, 'b');
	t.after(() => z.close());
	z.start();
	await waitFor(() => z.isConnected, 'connected');

	const allowed = inbound({ policy: 'y/allow-client' });
	z.opened(allowed);
	z.closed(allowed, { sent: 1234, received: 3456, durationMs: 12 });
	z.refused(inbound({ from: '127.0.1.3', policy: 'y/deny-other' }), '403', 'denied by DENY policy y/deny-other rule 0');
	z.refused(inbound(), '401', 'client address 127.0.1.1 is spiffe://cluster.local/ns/x/sa/client, not the authenticated …');
	await waitFor(() => agent.ring.size === 4, 'four flows');

	const [open, close, denied, mtls] = await apiFlows(agent.ring);
	assert.equal(open!.node, 'b');
	assert.equal(open!.verdict, 'FORWARDED');
	assert.equal(open!.direction, 'ingress', 'the destination reports ingress');
	assert.equal(open!.protocol, 'TCP');
	assert.equal(open!.match, 'ztunnel');
	assert.deepEqual(open!.source, { ip: '127.0.1.1', identity: 300, namespace: 'x', pod: 'client', workload: 'client', labels: ['app=client'] });
	assert.deepEqual(open!.destination, {
		ip: '127.0.1.2',
		port: 8080,
		identity: 301,
		namespace: 'y',
		pod: 'server',
		workload: 'server',
		labels: ['app=server'],
	});
	assert.deepEqual(open!.mesh, {
		event: 'open',
		reporter: 'destination',
		security: 'mutual_tls',
		sourceIdentity: id('x', 'client'),
		destinationIdentity: id('y', 'server'),
		authorizationPolicy: 'y/allow-client',
	});
	assert.deepEqual(open!.allowedBy, { kind: 'AuthorizationPolicy', namespace: 'y', name: 'allow-client' });
	assert.deepEqual(close!.mesh, {
		event: 'close',
		reporter: 'destination',
		security: 'mutual_tls',
		sourceIdentity: id('x', 'client'),
		destinationIdentity: id('y', 'server'),
		bytesSent: 1234,
		bytesReceived: 3456,
		durationMs: 12,
		authorizationPolicy: 'y/allow-client',
	});
	assert.equal(
		close!.summary,
		'x/client -> y/server:8080 ingress TCP mesh close FORWARDED (mTLS spiffe://cluster.local/ns/x/sa/client → spiffe://cluster.local/ns/y/sa/server, 1.2 kB ↑ 3.5 kB ↓, 12 ms; allowed by AuthorizationPolicy y/allow-client)',
	);
	assert.equal(denied!.verdict, 'DROPPED');
	assert.equal(denied!.dropReason, 'AUTHZ_DENIED');
	assert.equal(denied!.dropReasonDesc, 'denied by DENY policy y/deny-other rule 0');
	assert.deepEqual(denied!.isolatedBy, [{ kind: 'AuthorizationPolicy', namespace: 'y', name: 'deny-other' }]);
	assert.equal(denied!.mesh!.code, '403');
	assert.equal(denied!.source.pod, 'other');
	assert.equal(mtls!.dropReason, 'MTLS_FAILED');
	assert.equal(mtls!.isolatedBy, undefined);

	// The observer API's own filters see them like any flow.
	assert.deepEqual(
		(await apiFlows(agent.ring, '?verdict=DROPPED&namespace=x')).map((f) => f.dropReason),
		['AUTHZ_DENIED', 'MTLS_FAILED'],
	);
	assert.deepEqual(agent.metrics.records, { accepted: 4, malformed: 0 });
	assert.equal(agent.metrics.flows, 4, 'the flow metrics count them');
});

test('the source’s ztunnel: egress flows, a refusal the destination answered 403 names the policy it sent', async (t) => {
	const path = join(tempDir(t), 'flows.sock');
	const agent = await agentSide(path, 'a');
	t.after(() => agent.server.close());
	const z = reporter(path, 'a');
	t.after(() => z.close());
	z.start();
	z.refused(
		outbound({ from: '127.0.1.3', policy: 'y/deny-other', status: 403 }),
		'WEIR_ERR_HBONE_REFUSED',
		'the ztunnel of node 127.0.0.12 answered 403 to CONNECT 127.0.1.2:8080: denied by DENY policy y/deny-other rule 0',
	);
	z.opened(outbound());
	await waitFor(() => agent.ring.size === 2, 'two flows');
	const [refused, open] = agent.ring.recent();
	assert.equal(refused!.direction, 'egress');
	assert.equal(refused!.mesh!.reporter, 'source');
	assert.equal(refused!.dropReason, 'AUTHZ_DENIED');
	assert.deepEqual(refused!.isolatedBy, [{ kind: 'AuthorizationPolicy', namespace: 'y', name: 'deny-other' }]);
	assert.equal(refused!.source.port, 43210);
	assert.match(
		refused!.summary,
		/^x\/other:43210 -> y\/server:8080 egress TCP mesh refused DROPPED \(AUTHZ_DENIED: .*; denied by AuthorizationPolicy y\/deny-other; mTLS /,
	);
	assert.match(open!.summary, /FORWARDED \(mTLS .*; admitted by the destination's ztunnel\)$/);
});

test('drop reasons: stable names from the inbound status or the outbound failure', () => {
	const cases: Array<[ConnectionInfo, string, string]> = [
		[inbound(), '403', 'AUTHZ_DENIED'],
		[inbound(), '401', 'MTLS_FAILED'],
		[inbound(), '421', 'MTLS_FAILED'],
		[inbound(), '503', 'DESTINATION_UNAVAILABLE'],
		[inbound(), '404', 'HBONE_REFUSED'],
		[inbound(), '400', 'HBONE_REFUSED'],
		[inbound(), '500', 'HBONE_REFUSED'],
		[outbound({ status: 403 }), 'WEIR_ERR_HBONE_REFUSED', 'AUTHZ_DENIED'],
		[outbound({ status: 503 }), 'WEIR_ERR_HBONE_REFUSED', 'DESTINATION_UNAVAILABLE'],
		[outbound({ status: 404 }), 'WEIR_ERR_HBONE_REFUSED', 'HBONE_REFUSED'],
		[outbound(), 'WEIR_ERR_HBONE_CONNECT', 'MTLS_FAILED'],
		[outbound(), 'WEIR_ERR_HBONE_PEER_IDENTITY', 'MTLS_FAILED'],
		[outbound(), 'WEIR_ERR_OUTBOUND_NO_CERT', 'MTLS_FAILED'],
		[outbound(), 'WEIR_ERR_HBONE_TIMEOUT', 'HBONE_REFUSED'],
		[outbound(), 'WEIR_ERR_OUTBOUND_DESTINATION', 'HBONE_REFUSED'],
	];
	for (const [c, code, want] of cases) assert.equal(meshDropReason(c, code), want, `${c.direction} ${code} ${c.hboneStatus ?? ''}`);
});

test('an agent restart: the reporter reconnects and delivers what was queued meanwhile, in order', async (t) => {
	const path = join(tempDir(t), 'flows.sock');
	const first = await agentSide(path);
	const z = reporter(path, 'b');
	t.after(() => z.close());
	z.start();
	z.opened(outbound({ port: 1 }));
	await waitFor(() => first.ring.size === 1, 'the first flow');
	await first.server.close();
	await waitFor(() => !z.isConnected, 'the reporter notices');
	for (const port of [2, 3, 4]) z.opened(outbound({ port }));
	assert.equal(z.queued, 3, 'held while the agent is away');
	// A stale file where the socket goes (a killed agent's) is replaced at start.
	writeFileSync(path, 'stale');
	const second = await agentSide(path);
	t.after(() => second.server.close());
	await waitFor(() => second.ring.size === 3, 'the queued flows on the new agent');
	assert.deepEqual(
		second.ring.recent().map((f) => f.source.port),
		[2, 3, 4],
	);
	assert.equal(z.queued, 0);
	assert.equal(z.stats.connects, 2);
	assert.equal(z.stats.dropped, 0);
});

test('malformed lines are skipped and counted, logged at most once per interval; the connection stays', async (t) => {
	const path = join(tempDir(t), 'flows.sock');
	let now = 1_000_000;
	const agent = await agentSide(path, 'b', () => now);
	t.after(() => agent.server.close());
	const good = (port: number): string => JSON.stringify(meshFlowRecord('b', Date.parse('2026-12-02T10:00:00Z'), outbound({ port }), 'open'));
	const c = connect(path);
	t.after(() => c.destroy());
	await new Promise((r) => c.once('connect', r));
	c.write('not json\n');
	c.write(`${good(1)}\n`);
	c.write(`${JSON.stringify({ ...JSON.parse(good(2)), v: 2 })}\n`);
	c.write(`${JSON.stringify({ ...JSON.parse(good(3)), source: { port: 1 } })}\n`);
	c.write(`${'x'.repeat(20_000)}`);
	c.write(`${'y'.repeat(100)}\n`);
	const split = good(4);
	c.write(split.slice(0, 40));
	await new Promise((r) => setTimeout(r, 20));
	c.write(`${split.slice(40)}\n`);
	await waitFor(() => agent.ring.size === 2, 'the two good records');
	assert.deepEqual(
		agent.ring.recent().map((f) => f.source.port),
		[1, 4],
	);
	assert.equal(agent.server.stats.malformed, 4);
	assert.deepEqual(agent.metrics.records, { accepted: 2, malformed: 4 });
	assert.equal(agent.warned.length, 1, 'one log line within the interval');
	assert.match(agent.warned[0]!.msg, /malformed connection record from the ztunnel skipped: not JSON/);
	assert.equal(agent.warned[0]!.o['line'], 'not json');
	assert.equal(agent.warned[0]!.o['connection'], 1);
	now += 11_000;
	c.write('{}\n');
	await waitFor(() => agent.warned.length === 2, 'the next log line after the interval');
	assert.equal(agent.warned[1]!.o['notLogged'], 3, 'it says how many were not logged');
	assert.match(agent.warned[1]!.msg, /v must be 1/);
	c.write(`${good(5)}\n`);
	await waitFor(() => agent.ring.size === 3, 'the same connection still delivers');
	assert.equal(agent.server.stats.connections, 1);
});

test('the record’s validation names the first wrong field', () => {
	const ok = meshFlowRecord('b', Date.parse('2026-12-02T10:00:00Z'), inbound({ policy: 'y/p' }), 'refused', { code: '403', reason: 'denied' });
	assert.deepEqual(parseMeshFlowRecord(JSON.stringify(ok)), ok);
	assert.deepEqual(parseMeshFlowRecord(JSON.stringify({ ...ok, future: 'ignored' })), ok, 'fields a newer ztunnel adds are ignored');
	const bad = (over: Record<string, unknown>, msg: RegExp): void => assert.throws(() => parseMeshFlowRecord(JSON.stringify({ ...ok, ...over })), msg);
	bad({ v: 2 }, /^MeshFlowRecordError: v must be 1/);
	bad({ time: 'yesterday' }, /time must be an RFC 3339/);
	bad({ node: '' }, /node must be a string/);
	bad({ event: 'maybe' }, /event must be one of open, close, refused/);
	bad({ reporter: 'both' }, /reporter must be one of/);
	bad({ security: 'tls' }, /security must be one of/);
	bad({ source: 'x' }, /source must be an object/);
	bad({ source: { ip: '::1', port: 1 } }, /source.ip must be an IPv4 address/);
	bad({ destination: { ip: '10.0.0.1', port: 70000 } }, /destination.port must be an integer from 0 to 65535/);
	bad({ destination: { ip: '10.0.0.1', port: 1, identity: 'cluster.local/ns/a/sa/b' } }, /destination.identity must be a SPIFFE ID/);
	bad({ source: { ip: '10.0.0.1', port: 1, namespace: 'Bad NS' } }, /source.namespace must be a Kubernetes name/);
	bad({ bytesSent: -1 }, /bytesSent must be a whole number/);
	bad({ authorizationPolicy: 'no-namespace' }, /authorizationPolicy must be namespace\/name/);
	bad({ dropReason: 'SOMETHING' }, /dropReason must be one of AUTHZ_DENIED/);
	bad({ event: 'open' }, /dropReason is for refusals, not open/);
	bad({ reason: 'r'.repeat(3000) }, /reason must be a string of 1 to 2048/);
	assert.throws(() => parseMeshFlowRecord('[1]'), /not a JSON object/);
	assert.throws(() => parseMeshFlowRecord('{'), /not JSON/);
	assert.throws(() => parseMeshFlowRecord(`"${'x'.repeat(17_000)}"`), /longer than 16384 bytes/);
});

test('the queue is bounded: with no agent the oldest records are dropped and counted, the newest delivered when it comes', async (t) => {
	const path = join(tempDir(t), 'flows.sock');
	const registry = new Registry();
	const z = reporter(path, 'b', { maxQueue: 5, registry });
	t.after(() => z.close());
	z.start();
	for (let port = 1; port <= 12; port++) z.refused(outbound({ port }), 'WEIR_ERR_HBONE_TIMEOUT', 'no answer');
	assert.equal(z.queued, 5);
	assert.equal(z.stats.dropped, 7);
	const text = await registry.metrics();
	assert.match(text, /^weir_ztunnel_flow_records_dropped_total 7$/m);
	assert.match(text, /^weir_ztunnel_flow_socket_connected 0$/m);
	const agent = await agentSide(path);
	t.after(() => agent.server.close());
	await waitFor(() => agent.ring.size === 5, 'the newest five');
	assert.deepEqual(
		agent.ring.recent().map((f) => f.source.port),
		[8, 9, 10, 11, 12],
	);
	assert.match(await registry.metrics(), /^weir_ztunnel_flow_records_sent_total 5$/m);
	assert.match(await registry.metrics(), /^weir_ztunnel_flow_socket_connected 1$/m);
});

test('the observer never throws into the proxy, and a burst reaches a live agent whole', async (t) => {
	const path = join(tempDir(t), 'flows.sock');
	const agent = await agentSide(path);
	t.after(() => agent.server.close());
	const z = reporter(path, 'b');
	t.after(() => z.close());
	z.start();
	await waitFor(() => z.isConnected, 'connected');
	const broken = { ...outbound() };
	Object.defineProperty(broken, 'source', {
		get() {
			throw new Error('a bug');
		},
	});
	assert.doesNotThrow(() => z.opened(broken as ConnectionInfo));
	const seen: string[] = [];
	const throwing: ConnectionObserver = {
		opened: () => {
			throw new Error('bug');
		},
		closed: () => undefined,
		refused: () => undefined,
	};
	const o = fanOut(throwing, { opened: () => void seen.push('next'), closed: () => undefined, refused: () => undefined });
	assert.doesNotThrow(() => o.opened(outbound()));
	assert.deepEqual(seen, ['next'], 'the next observer still hears of it');
	for (let i = 0; i < 3000; i++) z.closed(outbound({ port: 1 + (i % 60000) }), { sent: i, received: i, durationMs: 1 });
	await waitFor(() => agent.ring.size === 3000, '3000 flows', 10_000);
	assert.equal(z.stats.dropped, 0);
	z.close();
	z.opened(outbound());
	assert.equal(z.queued, 0, 'nothing is kept after close');
});

test('HBONE on loopback: each ztunnel reports to its own node’s agent; a 403 is a DROPPED flow naming the policy on both', async (t) => {
	const dir = tempDir(t);
	const paths = { a: join(dir, 'a', 'flows.sock'), b: join(dir, 'b', 'flows.sock') };
	mkdirSync(join(dir, 'a'));
	const agents = { a: await agentSide(paths.a, 'a'), b: await agentSide(paths.b, 'b') };
	t.after(() => Promise.all([agents.a.server.close(), agents.b.server.close()]));
	const reporters: FlowReporter[] = [];
	const lab = await HboneLab.start(PODS, {
		observer: (node) => {
			const r = reporter(paths[node], node);
			r.start();
			reporters.push(r);
			return r;
		},
	});
	t.after(async () => {
		await lab.stop();
		for (const r of reporters) r.close();
	});
	lab.authorize = (i) =>
		i.source.identity === id('x', 'other')
			? { allowed: false, reason: 'denied by DENY policy y/no-other rule 0', policy: 'y/no-other' }
			: { allowed: true, reason: 'allowed by ALLOW policy y/allow-client rule 0', policy: 'y/allow-client' };
	const port = await lab.podServer('127.0.1.2');

	const app = await lab.nodes.a.capture('127.0.1.1', { address: '127.0.1.2', port });
	assert.equal((await readAll(app, (d) => d.includes('\n'))).data, 'peer 127.0.1.1\n');
	app.write('x'.repeat(5000));
	await readAll(app, (d) => d.length >= 5000);
	app.end();
	const events = (ring: FlowRing): string[] => ring.recent().map((f) => `${f.mesh?.event} ${f.verdict}`);
	await waitFor(() => events(agents.a.ring).includes('close FORWARDED') && events(agents.b.ring).includes('close FORWARDED'), 'close flows on both nodes');
	for (const [node, reporterName, direction] of [
		['a', 'source', 'egress'],
		['b', 'destination', 'ingress'],
	] as const) {
		const flows = agents[node].ring.recent();
		assert.deepEqual(events(agents[node].ring), ['open FORWARDED', 'close FORWARDED'], node);
		const close = flows[1]!;
		assert.equal(close.node, node);
		assert.equal(close.direction, direction);
		assert.equal(close.mesh!.reporter, reporterName);
		assert.equal(close.mesh!.sourceIdentity, id('x', 'client'));
		assert.equal(close.mesh!.destinationIdentity, id('y', 'server'));
		assert.equal(close.source.pod, 'client');
		assert.equal(close.destination.pod, 'server');
		assert.equal(close.destination.port, port);
		assert.ok(close.mesh!.bytesSent! >= 5000, `${node} sent ${close.mesh!.bytesSent}`);
		assert.ok(close.mesh!.bytesReceived! >= 5000 + 'peer 127.0.1.1\n'.length, `${node} received ${close.mesh!.bytesReceived}`);
		assert.ok(close.mesh!.durationMs! >= 0);
	}
	assert.deepEqual(
		agents.b.ring.recent()[1]!.allowedBy,
		{ kind: 'AuthorizationPolicy', namespace: 'y', name: 'allow-client' },
		'the destination names the policy that allowed it',
	);
	assert.equal(
		agents.a.ring.recent()[0]!.source.port,
		lab.nodes.a.observer.events.find((e) => e.kind === 'opened')!.c.source.port,
		'the source knows the client’s port',
	);

	const denied = await lab.nodes.a.capture('127.0.1.3', { address: '127.0.1.2', port });
	assert.ok((await readAll(denied)).ended);
	const drops = (ring: FlowRing): Flow[] => ring.recent().filter((f) => f.verdict === 'DROPPED');
	await waitFor(() => drops(agents.a.ring).length === 1 && drops(agents.b.ring).length === 1, 'the refusal on both nodes');
	for (const node of ['a', 'b'] as const) {
		const f = drops(agents[node].ring)[0]!;
		assert.equal(f.dropReason, 'AUTHZ_DENIED', node);
		assert.match(f.dropReasonDesc!, /denied by DENY policy y\/no-other rule 0/);
		assert.deepEqual(f.isolatedBy, [{ kind: 'AuthorizationPolicy', namespace: 'y', name: 'no-other' }], node);
		assert.equal(f.mesh!.authorizationPolicy, 'y/no-other');
		assert.equal(f.source.pod, 'other');
		assert.match(formatFlow(f), /DROPPED \(AUTHZ_DENIED: .*denied by DENY policy y\/no-other rule 0; denied by AuthorizationPolicy y\/no-other; mTLS /);
	}
	assert.equal(drops(agents.b.ring)[0]!.mesh!.code, '403');
	assert.equal(drops(agents.a.ring)[0]!.mesh!.code, 'WEIR_ERR_HBONE_REFUSED');
});

/** A mesh flow as the agent makes it from the record's line, for the formatting tests. */
function meshFlowOf(r: MeshFlowRecord): Flow {
	return meshFlow(parseMeshFlowRecord(JSON.stringify(r)), flowIndex(r.node).context());
}

test('weir observe prints mesh flows: identities, bytes each way, duration, the policy; table too', async () => {
	const t0 = Date.parse('2026-12-02T10:00:00.123Z');
	const close = meshFlowOf(
		meshFlowRecord('a', t0, outbound({ policy: undefined }), 'close', { result: { sent: 1234, received: 3_400_000, durationMs: 1500 } }),
	);
	assert.equal(
		formatFlow(close),
		"10:00:00.123 [a] x/client:43210 -> y/server:8080 egress TCP mesh close FORWARDED (mTLS spiffe://cluster.local/ns/x/sa/client → spiffe://cluster.local/ns/y/sa/server, 1.2 kB ↑ 3.4 MB ↓, 1.5 s; admitted by the destination's ztunnel)",
	);
	const refused = meshFlowOf(
		meshFlowRecord('b', t0, inbound({ from: '127.0.1.3', policy: 'y/allow-client' }), 'refused', {
			code: '403',
			reason: 'no ALLOW policy of y/allow-client admits spiffe://cluster.local/ns/x/sa/other on port 8080',
		}),
	);
	assert.equal(
		formatFlow(refused),
		'10:00:00.123 [b] x/other -> y/server:8080 ingress TCP mesh refused DROPPED (AUTHZ_DENIED: no ALLOW policy of y/allow-client admits spiffe://cluster.local/ns/x/sa/other on port 8080; denied by AuthorizationPolicy y/allow-client; mTLS spiffe://cluster.local/ns/x/sa/other → spiffe://cluster.local/ns/y/sa/server)',
	);
	assert.deepEqual(tableRow(refused).slice(4, 6), ['ingress TCP mesh refused', 'DROPPED']);
	assert.match(tableRow(refused)[6]!, /^AUTHZ_DENIED: .*; denied by AuthorizationPolicy y\/allow-client; mTLS /);
	const open = meshFlowOf(meshFlowRecord('b', t0, inbound(), 'open'));
	assert.match(formatFlow(open), /ingress TCP mesh open FORWARDED \(mTLS .* → .*; no AuthorizationPolicy applies\)$/);
	const broke = meshFlowOf(
		meshFlowRecord('b', t0, inbound(), 'close', { result: { sent: 5, received: 0, durationMs: 61_000, error: 'source: read ECONNRESET' } }),
	);
	assert.match(formatFlow(broke), /5 B ↑ 0 B ↓, 1\.0 min, ended by an error: source: read ECONNRESET; no AuthorizationPolicy applies\)$/);
	assert.deepEqual([0, 999, 1000, 999_949, 999_950, 2_500_000_000].map(formatBytes), ['0 B', '999 B', '1.0 kB', '999.9 kB', '1.0 MB', '2.5 GB']);
	assert.deepEqual([0, 12.4, 999, 1000, 59_999, 90_000].map(formatDuration), ['0 ms', '12 ms', '999 ms', '1.0 s', '60.0 s', '1.5 min']);

	// Through the CLI against a node's observer API, filtered by the drop reason.
	const ring = new FlowRing(10);
	for (const f of [close, refused, open]) ring.add(f);
	const app = Fastify();
	await app.register(observeApi, { ring });
	await app.listen({ port: 0, host: '127.0.0.1' });
	try {
		const server = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
		const out: string[] = [];
		await buildCli((s) => out.push(s)).parseAsync(['node', 'weir', 'observe', '--server', server, '--drop-reason', 'AUTHZ_DENIED']);
		assert.deepEqual(out, [formatFlow(refused)]);
	} finally {
		await app.close();
	}
});

test('the service map counts an edge’s flows over mutual TLS', () => {
	const map = new ServiceMap();
	const t0 = Date.parse('2026-12-02T10:00:00Z');
	map.add(meshFlowOf(meshFlowRecord('b', t0, inbound({ policy: 'y/allow-client' }), 'open')));
	map.add(meshFlowOf(meshFlowRecord('b', t0, inbound({ policy: 'y/allow-client' }), 'close', { result: { sent: 1, received: 1, durationMs: 1 } })));
	const edge = map.view().edges.find((e) => e.source === 'x/client' && e.destination === 'y/server')!;
	assert.deepEqual(edge.mtls, { flows: 2 });
	assert.deepEqual(edge.policies.allowedBy, ['y/allow-client']);
});

test('deploy/: the ztunnel mounts the socket’s host directory, and only it; the agent’s mount of /var/run/weir holds it', () => {
	type Pod = {
		containers: { name: string; command?: string[]; volumeMounts?: { name: string; mountPath: string }[] }[];
		volumes: { name: string; hostPath?: { path: string } }[];
	};
	const daemonSet = (file: string, name: string): Pod => {
		const docs = parseAllDocuments(readFileSync(join(repoRoot, 'deploy', 'base', file), 'utf8')).map((d) => d.toJS() as Record<string, unknown>);
		const ds = docs.find((d) => d['kind'] === 'DaemonSet' && (d['metadata'] as { name: string }).name === name);
		assert.ok(ds, `${file} has the DaemonSet ${name}`);
		return (ds['spec'] as { template: { spec: Pod } }).template.spec;
	};
	const hostMounts = (pod: Pod, container: string): Map<string, string> => {
		const c = pod.containers.find((x) => x.name === container)!;
		const out = new Map<string, string>();
		for (const m of c.volumeMounts ?? []) {
			const host = pod.volumes.find((v) => v.name === m.name)?.hostPath?.path;
			if (host) out.set(host, m.mountPath);
		}
		return out;
	};
	const socketDir = dirname(DEFAULTS.ztunnelFlowSocket);
	const z = hostMounts(daemonSet('ztunnel.yaml', 'weir-ztunnel'), 'ztunnel');
	assert.deepEqual([...z], [[socketDir, socketDir]], 'the ztunnel sees its socket directory at the same path, and nothing else of the host');
	const agent = hostMounts(daemonSet('daemonset.yaml', 'weir-agent'), 'agent');
	assert.equal(agent.get(DEFAULTS.runDir), DEFAULTS.runDir);
	assert.ok(socketDir.startsWith(`${DEFAULTS.runDir}/`));
	assert.equal(DEFAULT_ZTUNNEL_CONFIG.flowSocket, DEFAULTS.ztunnelFlowSocket);
});
