// GET /v1/flows query validation (the route's JSON schema), in-process with inject():
// every parameter on the good path, defaults, and each bad parameter answered 400 with
// a message that names it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify, { FastifyInstance } from 'fastify';
import { Flow } from '../../src/observe/flow.js';
import { FlowRing } from '../../src/observe/flow-ring.js';
import { observeApi } from '../../src/observe/api.js';

function flow(i: number, over: Partial<Flow> = {}): Flow {
	return {
		time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
		node: 'n1',
		verdict: 'DROPPED',
		dropReason: 'POLICY_DENIED',
		direction: 'ingress',
		isReply: false,
		ipVersion: 'IPv4',
		protocol: 'TCP',
		source: { ip: '10.0.0.1', port: 40000 + i, identity: 300, namespace: 'b-apache', pod: 'apache', labels: [] },
		destination: { ip: '10.0.0.2', port: 6379, identity: 301, namespace: 'd-redis', pod: 'redis', labels: [] },
		match: 'none',
		summary: `flow ${i}`,
		...over,
	};
}

let app: FastifyInstance;
const ring = new FlowRing(1000);

before(async () => {
	for (let i = 0; i < 150; i++) ring.add(flow(i));
	ring.add(flow(150, { verdict: 'FORWARDED', dropReason: undefined }));
	ring.add(flow(151, { protocol: 'UDP' }));
	ring.add(flow(152, { destination: { ip: '10.0.0.3', port: 80, identity: 302, namespace: 'c-app', pod: 'app', labels: [] } }));
	app = Fastify();
	await app.register(observeApi, { ring });
});

after(async () => {
	await app.close();
});

async function get(query: string): Promise<{ status: number; body: { flows?: Flow[]; statusCode?: number; code?: string; error?: string; message?: string } }> {
	const r = await app.inject({ url: `/v1/flows?${query}` });
	return { status: r.statusCode, body: r.json() };
}

const summaries = (flows: Flow[] | undefined): string[] => (flows ?? []).map((f) => f.summary);

describe('GET /v1/flows query', () => {
	test('every parameter at once filters as asked; verdict and protocol in any case', async () => {
		const since = new Date(Date.UTC(2026, 0, 1, 0, 0, 100)).toISOString();
		const r = await get(`namespace=d-redis&pod=d-redis/redis&verdict=dropped&port=6379&protocol=tcp&since=${since}&limit=3&follow=false`);
		assert.equal(r.status, 200, JSON.stringify(r.body));
		// the newest three DROPPED TCP flows to d-redis/redis:6379 since second 100, oldest first
		assert.deepEqual(summaries(r.body.flows), ['flow 147', 'flow 148', 'flow 149']);
		assert.deepEqual(summaries((await get('verdict=Forwarded')).body.flows), ['flow 150']);
		assert.deepEqual(summaries((await get('protocol=udp')).body.flows), ['flow 151']);
		assert.deepEqual(summaries((await get('port=80&namespace=c-app&pod=app')).body.flows), ['flow 152']);
		assert.deepEqual(summaries((await get(`since=${new Date(Date.UTC(2026, 0, 1, 0, 2, 31)).toISOString()}`)).body.flows), ['flow 151', 'flow 152']);
		assert.equal((await get('limit=0')).body.flows?.length, 0);
		assert.equal((await get('limit=100000&namespace=d-redis')).body.flows?.length, 152);
	});

	test('defaults: the last 100 flows, not followed; empty filters and unknown parameters are ignored', async () => {
		for (const q of ['', 'namespace=&pod=', 'colour=blue']) {
			const r = await get(q);
			assert.equal(r.status, 200, q);
			assert.equal(r.body.flows?.length, 100, q);
			assert.equal(r.body.flows?.at(-1)?.summary, 'flow 152', q);
		}
	});

	test('each bad parameter is a 400 that names it and says what it takes', async () => {
		const cases: Array<[string, RegExp]> = [
			['verdict=MAYBE', /^verdict must be one of FORWARDED, DROPPED, AUDIT$/],
			['verdict=', /^verdict must be one of/],
			['port=70000', /^port must be an integer from 0 to 65535$/],
			['port=-1', /^port must be an integer from 0 to 65535$/],
			['port=redis', /^port must be an integer/],
			['port=1.5', /^port must be an integer/],
			['port=1&port=2', /^port must be an integer/],
			['protocol=GRE', /^protocol must be one of TCP, UDP, SCTP, ICMPv4$/],
			['since=yesterday', /^since must be an RFC 3339 date-time with a time zone/],
			['since=2026-01-01', /^since must be an RFC 3339 date-time/],
			['since=2026-01-01T00:00:00', /^since must be an RFC 3339 date-time/],
			['limit=-1', /^limit must be an integer from 0 to 100000$/],
			['limit=100001', /^limit must be an integer from 0 to 100000$/],
			['limit=all', /^limit must be an integer/],
			['follow=maybe', /^follow must be true or false$/],
			['namespace=a&namespace=b', /^namespace must be a single string$/],
			['pod=a&pod=b', /^pod must be a single string$/],
			// the first bad one is named, good ones around it do not hide it
			['namespace=d-redis&port=99999&verdict=DROPPED', /^port must be/],
		];
		for (const [q, message] of cases) {
			const r = await get(q);
			assert.equal(r.status, 400, q);
			assert.deepEqual({ ...r.body, message: undefined }, { statusCode: 400, code: 'WEIR_ERR_BAD_QUERY', error: 'Bad Request', message: undefined }, q);
			assert.match(r.body.message ?? '', message, q);
		}
	});
});

test('follow on a node with no flows yet: the stream opens at once, over a real socket', async () => {
	const app = Fastify({ logger: false });
	await app.register(observeApi, { ring: new FlowRing(16) });
	await app.listen({ host: '127.0.0.1', port: 0 });
	const abort = new AbortController();
	try {
		const addr = app.server.address();
		const port = typeof addr === 'object' && addr ? addr.port : 0;
		// Headers within 2 s, or the fetch fails: before the fix they waited for the first flow.
		const timer = setTimeout(() => abort.abort(new Error('no response headers within 2 s')), 2000);
		const res = await fetch(`http://127.0.0.1:${port}/v1/flows?follow=true`, { signal: abort.signal });
		clearTimeout(timer);
		assert.equal(res.status, 200);
		assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
	} finally {
		abort.abort();
		await app.close();
	}
});
