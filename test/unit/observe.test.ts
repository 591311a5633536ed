import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { DatapathEvent } from '../../src/kernel/codecs.js';
import { Identity } from '../../src/kernel/layout.js';
import { Flow, FlowContext, matchesFilter, toFlow } from '../../src/observe/flow.js';
import { FlowRing } from '../../src/observe/flow-ring.js';
import { observeApi } from '../../src/observe/api.js';
import { buildCli } from '../../src/cli/program.js';

const ctx: FlowContext = {
	node: 'node-1',
	podByIp: (ip) =>
		({
			'10.0.0.1': { namespace: 'b-apache', name: 'apache-1', workload: 'apache', labels: { app: 'apache' } },
			'10.0.0.2': { namespace: 'd-redis', name: 'redis-0', workload: 'redis', labels: { app: 'redis' } },
		})[ip],
	reservedName: (id) => (id === Identity.FirstCidr + 1 ? 'cidr:203.0.113.0/24' : undefined),
	rule: (id) => (id === 7 ? { namespace: 'd-redis', name: 'allow-app', direction: 'ingress', index: 0 } : undefined),
	isolatedBy: (epId, dir) => (epId === 2 && dir === 'ingress' ? ['d-redis/allow-app'] : []),
	wallClockMs: (ns) => 1_700_000_000_000 + Number(ns / 1_000_000n),
};

function ev(over: Partial<DatapathEvent>): DatapathEvent {
	return {
		tsNs: 5_000_000n,
		type: 'drop',
		direction: 'ingress',
		verdict: 'DROPPED',
		reason: -131,
		reasonName: 'POLICY_DENIED',
		protocol: 6,
		tcpFlags: 2,
		epId: 2,
		srcIdentity: 300,
		dstIdentity: 301,
		ruleId: 0,
		ifindex: 9,
		pktLen: 60,
		src: '10.0.0.1',
		dst: '10.0.0.2',
		sport: 40000,
		dport: 6379,
		isReply: false,
		match: 'none',
		icmpType: 0,
		icmpCode: 0,
		...over,
	};
}

test('a policy drop names both pods, the reason and the isolating policy', () => {
	const f = toFlow(ev({}), ctx);
	assert.equal(f.verdict, 'DROPPED');
	assert.equal(f.dropReason, 'POLICY_DENIED');
	assert.match(f.dropReasonDesc!, /no NetworkPolicy rule allows/);
	assert.equal(f.source.pod, 'apache-1');
	assert.equal(f.source.namespace, 'b-apache');
	assert.equal(f.destination.pod, 'redis-0');
	assert.equal(f.destination.port, 6379);
	assert.deepEqual(f.tcpFlags, ['SYN']);
	assert.deepEqual(f.isolatedBy, [{ kind: 'NetworkPolicy', namespace: 'd-redis', name: 'allow-app' }]);
	assert.equal(f.time, new Date(1_700_000_000_005).toISOString());
	assert.equal(
		f.summary,
		'b-apache/apache-1:40000 -> d-redis/redis-0:6379 ingress TCP Flags: SYN DROPPED (POLICY_DENIED: no NetworkPolicy rule allows this connection; isolated by d-redis/allow-app)',
	);
});

test('an allowed flow names the rule that allowed it; non-pod ends are described', () => {
	const f = toFlow(
		ev({
			type: 'policy-verdict',
			verdict: 'FORWARDED',
			reason: 0,
			reasonName: 'OK',
			ruleId: 7,
			match: 'l3-l4',
			src: '203.0.113.9',
			srcIdentity: Identity.FirstCidr + 1,
		}),
		ctx,
	);
	assert.equal(f.dropReason, undefined);
	assert.deepEqual(f.allowedBy, { kind: 'NetworkPolicy', namespace: 'd-redis', name: 'allow-app', rule: 'ingress[0]' });
	assert.equal(f.source.reserved, 'cidr:203.0.113.0/24');
	assert.match(f.summary, /allowed by d-redis\/allow-app ingress\[0\]/);
	const world = toFlow(ev({ src: '198.51.100.1', srcIdentity: Identity.World }), ctx);
	assert.equal(world.source.reserved, 'world');
});

test('filters match either end', () => {
	const f = toFlow(ev({}), ctx);
	assert.ok(matchesFilter(f, { namespace: 'd-redis' }));
	assert.ok(matchesFilter(f, { namespace: 'b-apache', verdict: 'DROPPED', port: 6379 }));
	assert.ok(matchesFilter(f, { pod: 'd-redis/redis-0' }));
	assert.ok(matchesFilter(f, { pod: 'apache-1' }));
	assert.ok(!matchesFilter(f, { pod: 'b-apache/redis-0' }));
	assert.ok(!matchesFilter(f, { verdict: 'FORWARDED' }));
	assert.ok(!matchesFilter(f, { port: 80 }));
	assert.ok(!matchesFilter(f, { namespace: 'kube-system' }));
});

test('the ring keeps the newest flows and feeds followers', () => {
	const ring = new FlowRing(3);
	const seen: Flow[] = [];
	const stop = ring.follow((f) => seen.push(f));
	for (let i = 0; i < 5; i++) ring.add(toFlow(ev({ sport: 1000 + i }), ctx));
	stop();
	ring.add(toFlow(ev({ sport: 2000 }), ctx));
	assert.deepEqual(
		ring.recent().map((f) => f.source.port),
		[1003, 1004, 2000],
	);
	assert.equal(seen.length, 5);
	assert.equal(ring.total, 6);
	assert.throws(() => new FlowRing(0), RangeError);
});

test('the API filters, rejects bad queries with 400, and follows live', async () => {
	const ring = new FlowRing(100);
	ring.add(toFlow(ev({}), ctx));
	ring.add(toFlow(ev({ type: 'policy-verdict', verdict: 'FORWARDED', reason: 0, reasonName: 'OK', ruleId: 7 }), ctx));
	const app = Fastify();
	await app.register(observeApi, { ring });
	try {
		const all = await app.inject({ url: '/v1/flows' });
		assert.equal(all.statusCode, 200);
		assert.equal((all.json() as { flows: Flow[] }).flows.length, 2);
		const dropped = await app.inject({ url: '/v1/flows?verdict=DROPPED&port=6379' });
		assert.deepEqual(
			(dropped.json() as { flows: Flow[] }).flows.map((f) => f.verdict),
			['DROPPED'],
		);
		for (const bad of ['verdict=MAYBE', 'port=70000', 'limit=-1', 'since=yesterday']) {
			const r = await app.inject({ url: `/v1/flows?${bad}` });
			assert.equal(r.statusCode, 400, bad);
			assert.match(r.body, /must be/);
		}
		// Follow over a real socket: one past flow, then one live.
		await app.listen({ port: 0, host: '127.0.0.1' });
		const addr = app.server.address() as { port: number };
		const res = await fetch(`http://127.0.0.1:${addr.port}/v1/flows?follow=true&verdict=DROPPED`);
		const reader = res.body!.getReader();
		const lines: string[] = [];
		let buf = '';
		setTimeout(() => ring.add(toFlow(ev({ sport: 5555 }), ctx)), 50);
		while (lines.length < 2) {
			const { value } = await reader.read();
			buf += new TextDecoder().decode(value);
			lines.push(...buf.split('\n').slice(0, -1));
			buf = buf.slice(buf.lastIndexOf('\n') + 1);
		}
		await reader.cancel();
		assert.equal((JSON.parse(lines[1]!) as Flow).source.port, 5555);
	} finally {
		await app.close();
	}
});

test('weir observe prints flows from an observer, filtered, compact and json; bad flags are refused', async () => {
	const ring = new FlowRing(10);
	ring.add(toFlow(ev({}), ctx));
	const app = Fastify();
	await app.register(observeApi, { ring });
	await app.listen({ port: 0, host: '127.0.0.1' });
	const server = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
	try {
		const out: string[] = [];
		await buildCli((s) => out.push(s)).parseAsync(['node', 'weir', 'observe', '--server', server, '--verdict', 'DROPPED']);
		assert.equal(out.length, 1);
		assert.match(out[0]!, /\[node-1\] b-apache\/apache-1:40000 -> d-redis\/redis-0:6379 .*DROPPED \(POLICY_DENIED/);
		const none: string[] = [];
		await buildCli((s) => none.push(s)).parseAsync(['node', 'weir', 'observe', '--server', server, '-o', 'json', '--namespace', 'nope']);
		assert.equal(none.length, 0);
		const json: string[] = [];
		await buildCli((s) => json.push(s)).parseAsync(['node', 'weir', 'observe', '--server', server, '-o', 'json']);
		assert.equal((JSON.parse(json[0]!) as Flow).destination.pod, 'redis-0');
		const cli = buildCli(() => undefined).configureOutput({ writeErr: () => undefined });
		await assert.rejects(cli.parseAsync(['node', 'weir', 'observe', '--port', 'x']), /a port is 0-65535/);
		await assert.rejects(
			buildCli(() => undefined).parseAsync(['node', 'weir', 'observe', '--server', 'http://127.0.0.1:1']),
			/cannot reach the Weir observer at http:\/\/127.0.0.1:1/,
		);
	} finally {
		await app.close();
	}
});
