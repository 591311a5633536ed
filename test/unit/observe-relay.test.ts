// `weir observe` and `weir ui` against the relay (weir-controller's composition root fed
// by real node observers on loopback), and `weir observe --server` to a node agent,
// which must give the same answer for filters only the relay's API knows.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCli } from '../../src/cli/program.js';
import { directEndpoint } from '../../src/cli/relay-client.js';
import { parseTime } from '../../src/cli/observe.js';
import { serveUi } from '../../src/cli/ui.js';
import { scenarioFlow, startRelayLab, until, type RelayLab } from '../helpers/relay-lab.js';

let lab: RelayLab;
const t0 = Date.now() - 60_000;

before(async () => {
	lab = await startRelayLab(['n1', 'n2']);
	const [n1, n2] = lab.nodes as [RelayLab['nodes'][0], RelayLab['nodes'][0]];
	n2.ring.add(scenarioFlow({ from: 'app', to: 'redis', port: 6379, node: 'n2', time: t0 }));
	n2.ring.add(scenarioFlow({ from: 'apache', to: 'redis', port: 6379, node: 'n2', time: t0 + 10 }));
	n1.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 8080, node: 'n1', time: t0 + 20 }));
	await until('relayed', 5000, async () => {
		const r = (await (await fetch(`${lab.url}/v1/flows`)).json()) as { flows: unknown[] };
		return r.flows.length === 3 ? true : undefined;
	});
});

after(async () => {
	await lab.stop();
});

async function weir(args: string[]): Promise<{ out: string[]; err: string[] }> {
	const out: string[] = [];
	const err: string[] = [];
	const cli = buildCli((s) => out.push(s)).configureOutput({ writeErr: (s) => void err.push(s) });
	await cli.parseAsync(['node', 'weir', ...args]);
	return { out, err };
}

test('weir observe through the relay: every verdict names its policy (compact)', async () => {
	const { out } = await weir(['observe', '--server', lab.url]);
	assert.equal(out.length, 3, out.join('\n'));
	assert.match(
		out[0]!,
		/\[n2\] c-app\/app-6b8d5f7c9-x7lpn:\d+ -> d-redis\/redis-6978fc44dd-blcjx:6379 ingress TCP Flags: SYN FORWARDED \(allowed by d-redis\/redis-allow-c-app ingress\[0\]\)$/,
	);
	assert.match(
		out[1]!,
		/\[n2\] b-apache\/apache-7c6cf4b867-2whdr:\d+ -> d-redis\/redis-6978fc44dd-blcjx:6379 .* DROPPED \(POLICY_DENIED: no NetworkPolicy rule allows this connection; isolated by d-redis\/redis-allow-c-app\)$/,
	);
	assert.match(out[2]!, /\[n1\] a-ingress\/.* -> b-apache\/.*:8080 .* FORWARDED \(no policy isolates either end\)$/);
});

test('weir observe: Hubble-style filters, -o table and -o json', async () => {
	const drop = await weir(['observe', '--server', lab.url, '--from-namespace', 'b-apache', '--to-pod', 'd-redis/redis', '-o', 'table']);
	assert.equal(drop.out.length, 2, drop.out.join('\n'));
	assert.match(drop.out[0]!, /^TIME\s+NODE\s+SOURCE\s+DESTINATION\s+TYPE\s+VERDICT\s+POLICY$/);
	assert.match(drop.out[1]!, /\s+n2\s+b-apache\/apache-.*\s+DROPPED\s+POLICY_DENIED: .*isolated by d-redis\/redis-allow-c-app$/);
	const json = await weir(['observe', '--server', lab.url, '--verdict', 'forwarded', '--to-label', 'app=redis', '-o', 'json']);
	assert.equal(json.out.length, 1);
	assert.equal((JSON.parse(json.out[0]!) as { source: { namespace: string } }).source.namespace, 'c-app');
	const two = await weir(['observe', '--server', lab.url, '-n', 'a-ingress', '-n', 'c-app', '--since', new Date(t0).toISOString(), '--first', '1']);
	assert.equal(two.out.length, 1);
	assert.match(two.out[0]!, /c-app\/app/);
});

test('weir observe --server to a node agent applies the filters its API lacks', async () => {
	const n2 = lab.nodes[1]!;
	const filters = ['--from-namespace', 'b-apache', '--verdict', 'DROPPED', '--verdict', 'AUDIT', '--to-identity', '40104'];
	const viaNode = await weir(['observe', '--server', n2.url, ...filters]);
	const viaRelay = await weir(['observe', '--server', lab.url, ...filters]);
	assert.equal(viaNode.out.length, 1, viaNode.out.join('\n'));
	assert.deepEqual(viaNode.out, viaRelay.out);
});

test('weir observe: a query the relay refuses is its clear message; times ago are accepted', async () => {
	await assert.rejects(weir(['observe', '--server', lab.url, '--drop-reason', 'no such']), /answered 400: drop-reason must be a name of letters/);
	await assert.rejects(weir(['observe', '--server', lab.url, '-f', '--until', '5m']), /answered 400: until cannot be combined with follow/);
	await assert.rejects(weir(['observe', '--since', 'yesterday']), /an RFC 3339 time with a zone/);
	const now = Date.parse('2026-01-01T12:00:00Z');
	assert.equal(parseTime('5m', now), '2026-01-01T11:55:00.000Z');
	assert.equal(parseTime('2026-01-01T12:00:00+01:00', now), '2026-01-01T11:00:00.000Z');
});

test('weir observe -f through the relay: live flows, and a notice when a node goes away', async () => {
	const n1 = lab.nodes[0]!;
	const out: string[] = [];
	const err: string[] = [];
	const { observe } = await import('../../src/cli/observe.js');
	const run = observe(
		{ server: lab.url, weirNamespace: 'weir-system', follow: true, output: 'compact', toPort: [9000] },
		(s) => out.push(s),
		(s) => err.push(s),
	);
	await new Promise((r) => setTimeout(r, 200));
	n1.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 9000, node: 'n1', time: Date.now() }));
	await until('the live flow printed', 5000, () => (out.length === 1 ? true : undefined));
	await n1.kill();
	await until('the notice', 5000, () => (err.some((l) => /node n1 is unavailable/.test(l)) ? true : undefined));
	await n1.revive();
	await until('n1 back', 10_000, () => (err.some((l) => /node n1 is back/.test(l)) ? true : undefined));
	await lab.stop(); // ends the stream
	await assert.rejects(run, /the flow stream from http:\/\/127\.0\.0\.1:\d+ broke/);
	assert.match(out[0]!, /a-ingress\/.* -> b-apache\/.*:9000 .* FORWARDED/);
	lab = await startRelayLab(['n1', 'n2']);
});

test('weir ui: serves the relay locally, GET only', async () => {
	const ui = await serveUi(directEndpoint(lab.url), '127.0.0.1', 0);
	try {
		const nodes = (await (await fetch(`${ui.url}v1/nodes`)).json()) as { nodes: Array<{ name: string }> };
		assert.deepEqual(
			nodes.nodes.map((n) => n.name),
			['n1', 'n2'],
		);
		const post = await fetch(`${ui.url}v1/flows`, { method: 'POST' });
		assert.equal(post.status, 405);
		const bad = await fetch(`${ui.url}v1/flows?verdict=x`);
		assert.equal(bad.status, 400, 'the relay’s answer, passed on');
	} finally {
		await ui.close();
	}
});
