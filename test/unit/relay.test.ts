// The cluster-wide relay against real node observers on loopback (the agent's own
// observer API over a FlowRing, one fastify server per "node"): merge order across
// nodes, a node that dies and returns, a node that accepts and never answers, a slow
// follower next to a fast one, the query schema's 400s, the filters, the service map.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Flow } from '../../src/observe/flow.js';
import { FlowMerger, type MergedFlow } from '../../src/relay/merge.js';
import { flowMatches, emptyFilter, labelsMatch } from '../../src/relay/filter.js';
import { ServiceMap } from '../../src/relay/service-map.js';
import { readLines, scenarioFlow, startRelayLab, until, type RelayLab } from '../helpers/relay-lab.js';

let lab: RelayLab;

before(async () => {
	lab = await startRelayLab(['n1', 'n2']);
});

after(async () => {
	await lab.stop();
});

async function get<T>(path: string): Promise<{ status: number; body: T }> {
	const r = await fetch(`${lab.url}${path}`);
	return { status: r.status, body: (await r.json()) as T };
}

async function nodesState(): Promise<Record<string, string>> {
	const { body } = await get<{ nodes: Array<{ name: string; state: string }> }>('/v1/nodes');
	return Object.fromEntries(body.nodes.map((n) => [n.name, n.state]));
}

test('the relay connects to every node and reports them', async () => {
	await until('both nodes connected', 5000, async () => {
		const s = await nodesState();
		return s['n1'] === 'connected' && s['n2'] === 'connected' ? true : undefined;
	});
});

test('flows of two nodes come out merged by time, though one node delivers its flows later', async () => {
	const [n1, n2] = lab.nodes as [RelayLab['nodes'][0], RelayLab['nodes'][0]];
	const t0 = Date.now();
	const since = new Date(t0).toISOString();
	const follow = readLines(`${lab.url}/v1/flows?follow=true&since=${since}&to-port=6379`, (ls) => ls.filter((l) => !l['event']).length >= 40, 5000);
	await new Promise((r) => setTimeout(r, 100));
	for (let i = 0; i < 20; i++) n1.ring.add(scenarioFlow({ from: 'app', to: 'redis', port: 6379, node: 'n1', time: t0 + 2 * i }));
	// n2 is 100 ms behind: its flows, interleaved in time with n1's, arrive after all of n1's.
	await new Promise((r) => setTimeout(r, 100));
	for (let i = 0; i < 20; i++) n2.ring.add(scenarioFlow({ from: 'apache', to: 'redis', port: 6379, node: 'n2', time: t0 + 2 * i + 1 }));
	const lines = (await follow).filter((l) => !l['event']) as unknown as Flow[];
	assert.equal(lines.length, 40, 'the follower got every flow');
	const times = lines.map((f) => Date.parse(f.time));
	assert.deepEqual(
		times,
		[...times].sort((a, b) => a - b),
		'the live stream is in time order',
	);
	assert.deepEqual(
		lines.slice(0, 4).map((f) => f.node),
		['n1', 'n2', 'n1', 'n2'],
		'the nodes interleave',
	);
	const past = await get<{ flows: Flow[] }>(`/v1/flows?since=${since}&to-port=6379&last=1000`);
	assert.deepEqual(
		past.body.flows.map((f) => Date.parse(f.time)),
		times,
		'the history holds the same order',
	);
});

test('a node that dies is reported unavailable, the rest keeps streaming, and it rejoins with what it recorded meanwhile', async () => {
	const [n1, n2] = lab.nodes as [RelayLab['nodes'][0], RelayLab['nodes'][0]];
	const t0 = Date.now();
	const follow = readLines(
		`${lab.url}/v1/flows?follow=true&since=${new Date(t0).toISOString()}&from-namespace=a-ingress`,
		(ls) => ls.filter((l) => !l['event']).length >= 6,
		15_000,
	);
	n2.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 8080, node: 'n2', time: t0 + 1 }));
	await new Promise((r) => setTimeout(r, 400));
	await n2.kill();
	await until('n2 unavailable', 5000, async () => ((await nodesState())['n2'] === 'unavailable' ? true : undefined));
	const { body } = await get<{ nodes: Array<{ name: string; state: string; error?: string }> }>('/v1/nodes');
	assert.match(body.nodes.find((n) => n.name === 'n2')!.error ?? '', /closed|cannot open|broke|ECONNREFUSED/);
	// n1 keeps flowing while n2 is gone.
	const t1 = Date.now();
	n1.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 8080, node: 'n1', time: t1 }));
	n1.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 8080, node: 'n1', time: t1 + 1 }));
	await until('n1 flows relayed while n2 is down', 3000, async () => {
		const r = await get<{ flows: Flow[] }>(`/v1/flows?since=${new Date(t1).toISOString()}&from-namespace=a-ingress&node=n1`);
		return r.body.flows.length === 2 ? true : undefined;
	});
	// What n2 recorded while its API was down comes back when it returns.
	n2.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 8080, node: 'n2', time: t1 + 2 }));
	n2.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 8080, node: 'n2', time: t1 + 3 }));
	await n2.revive();
	await until('n2 connected again', 10_000, async () => ((await nodesState())['n2'] === 'connected' ? true : undefined));
	n2.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 8080, node: 'n2', time: Date.now() }));
	const lines = await follow;
	const flows = lines.filter((l) => !l['event']) as unknown as Flow[];
	const rel = (f: Flow): string => `${f.node}@${Date.parse(f.time) - t1}`;
	assert.deepEqual(flows.slice(0, 5).map(rel), [`n2@${t0 + 1 - t1}`, 'n1@0', 'n1@1', 'n2@2', 'n2@3'], 'every flow once, none twice, the missed ones included');
	assert.equal(flows[5]!.node, 'n2');
	const all = await get<{ flows: Flow[] }>(`/v1/flows?since=${new Date(t0).toISOString()}&from-namespace=a-ingress&node=n2`);
	assert.equal(all.body.flows.length, 4, 'the history holds each of n2’s flows once');
	const events = lines.filter((l) => l['event'] === 'node').map((l) => `${l['node']}:${l['state']}`);
	assert.ok(events.includes('n2:unavailable'), `the stream says n2 went away: ${events}`);
	assert.ok(events.includes('n2:connected'), `and that it came back: ${events}`);
});

test('an agent that accepts connections and never answers (stopped) is unavailable; the others are not held up', async () => {
	const silent: Socket[] = [];
	const srv: Server = createServer((s) => silent.push(s));
	await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
	const port = (srv.address() as { port: number }).port;
	const stuck = await startRelayLab(['n1'], { mergeWindowMs: 200 });
	try {
		stuck.controller.relay.setTargets([
			{ node: 'n1', url: stuck.nodes[0]!.url },
			{ node: 'stopped', url: `http://127.0.0.1:${port}` },
		]);
		const t0 = Date.now();
		stuck.nodes[0]!.ring.add(scenarioFlow({ from: 'app', to: 'redis', port: 6379, node: 'n1', time: t0 }));
		const flows = await until('n1 flow relayed', 3000, async () => {
			const r = (await (await fetch(`${stuck.url}/v1/flows?since=${new Date(t0).toISOString()}`)).json()) as { flows: Flow[] };
			return r.flows.length ? r.flows : undefined;
		});
		assert.ok(Date.now() - t0 < 2500, 'released within the merge window, not after the silent node times out');
		assert.equal(flows[0]!.node, 'n1');
		const st = await until('the silent node unavailable', 8000, async () => {
			const r = (await (await fetch(`${stuck.url}/v1/nodes`)).json()) as { nodes: Array<{ name: string; state: string; error?: string }> };
			const s = r.nodes.find((n) => n.name === 'stopped');
			return s?.state === 'unavailable' ? s : undefined;
		});
		assert.match(st.error ?? '', /no answer within/);
	} finally {
		await stuck.stop();
		for (const s of silent) s.destroy();
		srv.close();
	}
});

test('a follower that does not read loses the oldest lines (and is told); a fast follower next to it loses nothing', async () => {
	const slow = await startRelayLab(['n1'], { followQueue: 1000, mergeWindowMs: 50 });
	const N = 30_000;
	try {
		const node = slow.nodes[0]!;
		await until('connected', 5000, () => (slow.controller.relay.nodes()[0]?.state === 'connected' ? true : undefined));
		const t0 = Date.now();
		const q = `since=${new Date(t0).toISOString()}`;
		// The slow client: sends its request, then reads nothing.
		const { port } = new URL(slow.url);
		const sock = createConnection({ host: '127.0.0.1', port: Number(port) });
		sock.setNoDelay(true);
		await new Promise<void>((r) => sock.once('connect', () => r()));
		sock.write(`GET /v1/flows?follow=true&${q} HTTP/1.1\r\nhost: x\r\n\r\n`);
		sock.pause();
		let fastCount = 0;
		let fastLost = 0;
		const fast = readLines(
			`${slow.url}/v1/flows?follow=true&${q}`,
			(ls) => {
				const l = ls.at(-1)!;
				if (l['event'] === 'lost') fastLost += Number(l['lost']);
				else if (!l['event']) fastCount++;
				return fastCount + fastLost >= N;
			},
			60_000,
			true,
		);
		await until('two followers', 3000, () => (slow.controller.relay.stats()['followers'] === 2 ? true : undefined));
		// 5 000 flows/s for 6 s: far more than the slow client's socket buffers and queue hold.
		for (let i = 0; i < N; i++) {
			node.ring.add(scenarioFlow({ from: 'app', to: 'redis', port: 6379, node: 'n1', time: t0 + Math.floor(i / 10), sport: 1024 + (i % 60000) }));
			if (i % 50 === 49) await new Promise((r) => setTimeout(r, 10));
		}
		await fast;
		assert.equal(fastLost, 0, 'the fast follower lost nothing');
		assert.equal(fastCount, N, 'the fast follower got every flow');
		const stats = slow.controller.relay.stats();
		assert.ok(stats['followersLost']! > 0, `the slow follower lost lines: ${JSON.stringify(stats)}`);
		// Now it reads: after what its socket held, it is told how many it lost.
		let text = '';
		sock.setEncoding('utf8');
		sock.on('data', (d: string) => (text += d));
		sock.resume();
		await until('the lost notice', 10_000, () => (/"event":"lost","lost":\d+/.test(text) ? true : undefined));
		const lost = Number(/"event":"lost","lost":(\d+)/.exec(text)![1]);
		assert.ok(lost > 0 && lost < N, `lost ${lost}`);
		sock.destroy();
	} finally {
		await slow.stop();
	}
});

test('the node agent’s own follow stream is bounded too: a follower that does not read is told what it lost', async () => {
	const node = lab.nodes[0]!;
	const sock = createConnection({ host: '127.0.0.1', port: node.port });
	await new Promise<void>((r) => sock.once('connect', () => r()));
	sock.write('GET /v1/flows?follow=true&limit=0 HTTP/1.1\r\nhost: x\r\n\r\n');
	sock.pause();
	await new Promise((r) => setTimeout(r, 100));
	const t0 = Date.now();
	for (let i = 0; i < 30_000; i++) {
		node.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 9999, node: 'n1', time: t0, sport: 1024 + (i % 60000) }));
		if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
	}
	let text = '';
	sock.setEncoding('utf8');
	sock.on('data', (d: string) => (text += d));
	sock.resume();
	await until('the lost notice from the node', 10_000, () => (/"event":"lost","lost":\d+/.test(text) ? true : undefined));
	sock.destroy();
	const lost = Number(/"event":"lost","lost":(\d+)/.exec(text)![1]);
	assert.ok(lost > 0 && lost < 30_000, `lost ${lost}`);
});

test('a malformed query is a 400 that says which parameter and what it takes', async () => {
	const cases: Array<[string, RegExp]> = [
		['verdict=MAYBE', /^verdict must be one of FORWARDED, DROPPED, AUDIT/],
		['to-port=99999', /^to-port must be an integer from 0 to 65535/],
		['since=yesterday', /^since must be an RFC 3339 date-time/],
		['from-identity=-1', /^from-identity must be an integer/],
		['last=lots', /^last must be an integer from 0 to 100000/],
		['follow=perhaps', /^follow must be true or false/],
		['drop-reason=no%20such', /^drop-reason must be a name of letters/],
		['nmespace=d-redis', /^unknown query parameter 'nmespace' \(known: namespace, pod/],
		['follow=true&until=2026-01-01T00:00:00Z', /^until cannot be combined with follow/],
		['first=3&last=3', /^first and last cannot be combined/],
		['since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z', /^until must not be before since/],
	];
	for (const [q, want] of cases) {
		const r = await lab.controller.http.inject({ method: 'GET', url: `/v1/flows?${q}` });
		assert.equal(r.statusCode, 400, q);
		const body = r.json() as { message: string; code: string };
		assert.match(body.message, want, q);
		assert.equal(body.code, 'WEIR_ERR_BAD_QUERY', q);
	}
	const m = await lab.controller.http.inject({ method: 'GET', url: '/v1/service-map?since=today' });
	assert.equal(m.statusCode, 400);
	assert.match((m.json() as { message: string }).message, /^since must be an RFC 3339 date-time/);
	const ok = await lab.controller.http.inject({ method: 'GET', url: '/v1/flows?verdict=dropped&protocol=tcp&verdict=FORWARDED' });
	assert.equal(ok.statusCode, 200, 'any case, repeated values');
	const put = await lab.controller.http.inject({ method: 'DELETE', url: '/v1/flows' });
	assert.equal(put.statusCode, 404, 'read-only: nothing but GET');
});

test('filters: from/to pairs, label, identity, drop reason, since/until, first/last, follow from a time', async () => {
	const [n1, n2] = lab.nodes as [RelayLab['nodes'][0], RelayLab['nodes'][0]];
	const t0 = Date.now() + 1000;
	const specs = [
		{ from: 'app', to: 'redis', port: 6379, node: 'n2', time: t0 },
		{ from: 'apache', to: 'redis', port: 6379, node: 'n2', time: t0 + 10 },
		{ from: 'ingress', to: 'apache', port: 8080, node: 'n1', time: t0 + 20 },
		{ from: 'apache', to: 'app', port: 8080, node: 'n1', time: t0 + 30 },
		{ from: 'app', to: 'redis', port: 8080, node: 'n2', time: t0 + 40 },
	] as const;
	for (const s of specs) (s.node === 'n1' ? n1 : n2).ring.add(scenarioFlow(s));
	// A kubelet probe: from the node itself (reserved host) to apache.
	const probe = scenarioFlow({ from: 'ingress', to: 'apache', port: 8080, node: 'n1', time: t0 + 45 });
	probe.source = { ip: '198.18.0.11', identity: 1, labels: [], reserved: 'host' };
	n1.ring.add(probe);
	const since = `since=${new Date(t0).toISOString()}`;
	const pairs = async (q: string): Promise<string[]> =>
		(await get<{ flows: Flow[] }>(`/v1/flows?${since}&${q}`)).body.flows.map(
			(f) => `${f.source.workload ?? f.source.reserved}>${f.destination.workload}:${f.destination.port}`,
		);
	await until('all six relayed', 3000, async () => ((await pairs('')).length === 6 ? true : undefined));
	assert.deepEqual(await pairs('from-reserved=host'), ['host>apache:8080']);
	assert.deepEqual(await pairs('to-workload=apache&not-from-reserved=host&not-from-reserved=remote-node'), ['ingress>apache:8080']);
	assert.deepEqual(await pairs('not-from-namespace=b-apache&not-to-port=8080'), ['app>redis:6379']);
	assert.equal((await pairs('not-from-namespace=b-apache&not-from-reserved=host')).length, 6, 'one negated filter: its fields all hold');
	assert.deepEqual(await pairs('from-namespace=b-apache'), ['apache>redis:6379', 'apache>app:8080']);
	assert.deepEqual(await pairs('to-namespace=b-apache'), ['ingress>apache:8080', 'host>apache:8080']);
	assert.deepEqual(await pairs('namespace=b-apache'), ['apache>redis:6379', 'ingress>apache:8080', 'apache>app:8080', 'host>apache:8080']);
	assert.deepEqual(await pairs('from-pod=c-app/app&to-pod=redis'), ['app>redis:6379', 'app>redis:8080']);
	assert.deepEqual(await pairs('from-label=app=apache&to-label=app=redis'), ['apache>redis:6379']);
	assert.deepEqual(await pairs('label=app=ingress'), ['ingress>apache:8080']);
	assert.deepEqual(await pairs('to-identity=40104&verdict=FORWARDED'), ['app>redis:6379']);
	assert.deepEqual(await pairs('drop-reason=policy_denied&to-port=6379'), ['apache>redis:6379']);
	assert.deepEqual(await pairs('verdict=DROPPED'), ['apache>redis:6379', 'app>redis:8080']);
	assert.deepEqual(await pairs('node=n1&port=8080'), ['ingress>apache:8080', 'apache>app:8080', 'host>apache:8080']);
	assert.deepEqual(await pairs('from-namespace=c-app&from-namespace=b-apache&to-workload=redis'), ['app>redis:6379', 'apache>redis:6379', 'app>redis:8080']);
	assert.deepEqual(await pairs(`until=${new Date(t0 + 20).toISOString()}`), ['app>redis:6379', 'apache>redis:6379', 'ingress>apache:8080']);
	assert.deepEqual(await pairs('first=2'), ['app>redis:6379', 'apache>redis:6379']);
	assert.deepEqual(await pairs('last=2'), ['app>redis:8080', 'host>apache:8080']);
	// follow + since: the past from that time first, then live flows.
	const live = readLines(`${lab.url}/v1/flows?follow=true&${since}&to-workload=redis`, (ls) => ls.filter((l) => !l['event']).length >= 4, 5000);
	await new Promise((r) => setTimeout(r, 100));
	n2.ring.add(scenarioFlow({ from: 'apache', to: 'redis', port: 6379, node: 'n2', time: t0 + 50 }));
	const got = (await live).filter((l) => !l['event']) as unknown as Flow[];
	assert.deepEqual(
		got.map((f) => `${f.source.workload}@${Date.parse(f.time) - t0}`),
		['app@0', 'apache@10', 'app@40', 'apache@50'],
	);
});

test('the service map: an edge per workload pair and port, counts by verdict, the deciding policies; namespaces', async () => {
	const map = await get<{
		nodes: Array<{ id: string }>;
		edges: Array<{
			source: string;
			destination: string;
			port?: number;
			counts: Record<string, number>;
			policies: { allowedBy: string[]; isolatedBy: string[] };
		}>;
	}>('/v1/service-map?namespace=d-redis');
	const e = (s: string, d: string, p: number) => map.body.edges.find((x) => x.source === s && x.destination === d && x.port === p);
	const drop = e('b-apache/apache', 'd-redis/redis', 6379);
	const fwd = e('c-app/app', 'd-redis/redis', 6379);
	assert.ok(drop && fwd, JSON.stringify(map.body.edges));
	assert.ok(drop.counts['DROPPED']! > 0 && drop.counts['FORWARDED'] === 0);
	assert.deepEqual(drop.policies.isolatedBy, ['d-redis/redis-allow-c-app']);
	assert.ok(fwd.counts['FORWARDED']! > 0 && fwd.counts['DROPPED'] === 0);
	assert.deepEqual(fwd.policies.allowedBy, ['d-redis/redis-allow-c-app']);
	assert.ok(
		map.body.edges.every((x) => x.source.startsWith('d-redis/') || x.destination.startsWith('d-redis/')),
		'only edges touching the namespace',
	);
	const ns = await get<{ namespaces: string[] }>('/v1/namespaces');
	assert.deepEqual(ns.body.namespaces, ['a-ingress', 'b-apache', 'c-app', 'd-redis']);
});

test('merge core (pure): the window, a full queue releasing its oldest, late flows counted', () => {
	let now = 10_000;
	const out: MergedFlow[] = [];
	const m = new FlowMerger({ windowMs: 100, capacity: 3, now: () => now, emit: (x) => out.push(x) });
	const f = (t: number): Flow => scenarioFlow({ from: 'app', to: 'redis', port: 6379, node: 'n1', time: t });
	m.push(f(9_990));
	now = 10_050;
	m.push(f(9_950));
	assert.equal(out.length, 0, 'both wait for the window');
	now = 10_120;
	m.release();
	assert.equal(out.length, 0, 'the earliest has not waited the window yet, and holds back the later one that has');
	now = 10_150;
	m.release();
	assert.deepEqual(
		out.map((x) => x.t),
		[9_950, 9_990],
		'both leave in time order',
	);
	m.push(f(10_160));
	m.push(f(10_165));
	m.push(f(10_162));
	m.push(f(10_161));
	assert.deepEqual(
		out.slice(2).map((x) => x.t),
		[10_160],
		'a full queue releases its earliest at once',
	);
	assert.equal(m.forced, 1);
	m.push(f(9_000));
	assert.equal(out.at(-1)!.t, 9_000, 'full again: the earliest, an old flow, goes');
	assert.equal(m.late, 1, 'and is counted late: a later flow was already out');
	now = 10_400;
	m.release();
	assert.deepEqual(
		out.slice(-3).map((x) => x.t),
		[10_161, 10_162, 10_165],
	);
	// A node's backlog (old flows) arriving after another node's: still merged in order.
	const b: MergedFlow[] = [];
	const m2 = new FlowMerger({ windowMs: 100, capacity: 100, now: () => now, emit: (x) => b.push(x) });
	for (const t of [5_000, 5_002, 5_004]) m2.push(f(t));
	now += 30;
	for (const t of [5_001, 5_003]) m2.push(f(t));
	now += 100;
	m2.release();
	assert.deepEqual(
		b.map((x) => x.t),
		[5_000, 5_001, 5_002, 5_003, 5_004],
	);
});

test('filter and map (pure): label selectors, replies are not edges, the map stays within its bound', () => {
	assert.ok(labelsMatch(['app=redis', 'tier=db'], 'app=redis,tier=db'));
	assert.ok(labelsMatch(['app=redis'], 'app'));
	assert.ok(!labelsMatch(['app=redis'], '!app'));
	assert.ok(labelsMatch(['app=redis'], 'app!=web'));
	assert.ok(!labelsMatch(['app=redis'], 'app==web'));
	const reply = scenarioFlow({ from: 'redis', to: 'app', port: 40000, node: 'n2', time: 1, reply: true });
	assert.ok(!flowMatches(reply, { ...emptyFilter(), replies: false }));
	const sm = new ServiceMap(2);
	sm.add(reply);
	assert.equal(sm.size, 0);
	for (const port of [1, 2, 3]) sm.add(scenarioFlow({ from: 'app', to: 'redis', port, node: 'n2', time: port }));
	assert.equal(sm.size, 2);
	assert.equal(sm.evicted, 1);
	assert.deepEqual(
		sm.view().edges.map((e) => e.port),
		[2, 3],
		'the edge seen longest ago went first',
	);
});
