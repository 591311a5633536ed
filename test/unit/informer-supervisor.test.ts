// The informer supervisor (src/policy/watch.ts): backoffDelay as a pure function, and
// SupervisedInformer against a real HTTP server on 127.0.0.1 that speaks enough of
// the Kubernetes list/watch API for namespaces (list, then a streamed watch from the
// list's resourceVersion), with answers scripted per request.
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { BackoffOptions, DEFAULT_BACKOFF, SupervisedInformer, backoffDelay } from '../../src/cluster/informers.js';

describe('backoffDelay', () => {
	const o: BackoffOptions = { initialMs: 100, maxMs: 1000, jitter: 0 };

	test('doubles from the initial delay up to the cap', () => {
		assert.deepEqual(
			[0, 1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, o)),
			[100, 200, 400, 800, 1000, 1000, 1000],
		);
		assert.equal(backoffDelay(10_000, o), 1000, 'a huge attempt count stays at the cap');
		assert.equal(backoffDelay(-3, o), 100, 'a negative attempt is the first');
	});

	test('jitter stays within [1 - jitter, 1 + jitter] of the delay, and spreads', () => {
		const j = { ...o, jitter: 0.3 };
		assert.equal(
			backoffDelay(0, j, () => 0),
			70,
		);
		assert.equal(
			backoffDelay(0, j, () => 0.5),
			100,
		);
		assert.equal(
			backoffDelay(0, j, () => 0.999999),
			130,
		);
		assert.equal(
			backoffDelay(9, j, () => 0.999999),
			1300,
			'jitter applies on top of the cap',
		);
		const seen = new Set<number>();
		for (let i = 0; i < 2000; i++) {
			const d = backoffDelay(2, j);
			assert.ok(d >= 280 && d <= 520, `${d} within 400 ± 30 %`);
			seen.add(d);
		}
		assert.ok(seen.size > 50, 'delays are spread, not fixed');
	});

	test('the default retries within seconds', () => {
		assert.ok(backoffDelay(100, DEFAULT_BACKOFF, () => 0.999999) <= 5200);
	});
});

/** Enough of kube-apiserver for GET /api/v1/namespaces and its watch. */
class FakeApiServer {
	readonly server: Server;
	/** status codes for the next list requests (then 200) */
	listPlan: number[] = [];
	/** status codes for the next watch requests (then 200, kept open) */
	watchPlan: number[] = [];
	lists = 0;
	readonly watches: Array<{ resourceVersion: string | null; status: number }> = [];
	items: Array<{ metadata: { name: string; resourceVersion: string } }> = [{ metadata: { name: 'a', resourceVersion: '5' } }];
	resourceVersion = 10;
	private watch: ServerResponse | undefined;
	private waiters: Array<() => void> = [];

	constructor() {
		this.server = createServer((req, res) => this.serve(req, res));
	}

	async listen(): Promise<string> {
		await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
		return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
	}

	private changed(): void {
		for (const w of this.waiters.splice(0)) w();
	}

	/** Resolves once `pred` holds (checked on every request), or fails after 5 s. */
	async until(what: string, pred: () => boolean): Promise<void> {
		const deadline = Date.now() + 5000;
		while (!pred()) {
			if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (lists ${this.lists}, watches ${JSON.stringify(this.watches)})`);
			await new Promise<void>((r) => {
				this.waiters.push(r);
				setTimeout(r, 20);
			});
		}
	}

	private status(res: ServerResponse, code: number, message: string): void {
		res.writeHead(code, { 'content-type': 'application/json' });
		res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message, code }));
	}

	private serve(req: IncomingMessage, res: ServerResponse): void {
		const url = new URL(req.url ?? '/', 'http://x');
		if (url.pathname !== '/api/v1/namespaces') return this.status(res, 404, 'not here');
		if (url.searchParams.get('watch') === 'true') {
			const status = this.watchPlan.shift() ?? 200;
			this.watches.push({ resourceVersion: url.searchParams.get('resourceVersion'), status });
			this.changed();
			if (status !== 200) return this.status(res, status, status === 410 ? 'too old resource version' : 'watch refused');
			res.writeHead(200, { 'content-type': 'application/json' });
			res.flushHeaders();
			this.watch = res;
			res.on('close', () => {
				if (this.watch === res) this.watch = undefined;
				this.changed();
			});
			return;
		}
		this.lists++;
		this.changed();
		const status = this.listPlan.shift() ?? 200;
		if (status !== 200) return this.status(res, status, 'etcdserver: request timed out');
		res.writeHead(200, { 'content-type': 'application/json' });
		res.end(JSON.stringify({ kind: 'NamespaceList', apiVersion: 'v1', metadata: { resourceVersion: String(this.resourceVersion) }, items: this.items }));
	}

	get watching(): boolean {
		return this.watch !== undefined;
	}

	/** One watch event on the open stream. */
	event(type: 'ADDED' | 'MODIFIED' | 'DELETED', name: string): void {
		assert.ok(this.watch, 'a watch is open');
		const rv = String(++this.resourceVersion);
		this.watch.write(`${JSON.stringify({ type, object: { kind: 'Namespace', apiVersion: 'v1', metadata: { name, resourceVersion: rv } } })}\n`);
	}

	/** Ends the open watch stream (as the API server does on a timeout or restart). */
	closeWatch(): void {
		this.watch?.end();
		this.watch = undefined;
	}

	async close(): Promise<void> {
		this.closeWatch();
		this.server.closeAllConnections();
		await new Promise<void>((r) => this.server.close(() => r()));
	}
}

describe('SupervisedInformer against a list/watch server', () => {
	const BACKOFF: BackoffOptions = { initialMs: 20, maxMs: 80, jitter: 0 };
	const LIMIT = { timeout: 15_000 }; // a hang fails instead of stalling the run
	let api: FakeApiServer;
	let inf: SupervisedInformer<k8s.V1Namespace>;
	let warnings: Array<{ err: string; retryInMs: number }>;
	let changes: number;

	beforeEach(async () => {
		api = new FakeApiServer();
		const server = await api.listen();
		const kc = new k8s.KubeConfig();
		kc.loadFromOptions({
			clusters: [{ name: 'fake', server, skipTLSVerify: true }],
			users: [{ name: 'nobody' }],
			contexts: [{ name: 'fake', cluster: 'fake', user: 'nobody' }],
			currentContext: 'fake',
		});
		const core = kc.makeApiClient(k8s.CoreV1Api);
		warnings = [];
		changes = 0;
		const log = {
			info: () => undefined,
			warn: (o: object) => void warnings.push(o as { err: string; retryInMs: number }),
		};
		inf = new SupervisedInformer(
			'namespaces',
			kc,
			'/api/v1/namespaces',
			() => core.listNamespace(),
			log,
			() => changes++,
			BACKOFF,
		);
	});

	afterEach(async () => {
		await inf.stop();
		await api.close();
	});

	const names = (): string[] =>
		inf
			.list()
			.map((n) => n.metadata!.name!)
			.sort();

	test('a list failing with 500 three times: retried with growing backoff, synced only after the list succeeds', LIMIT, async () => {
		api.listPlan = [500, 500, 500];
		let synced = false;
		void inf.synced.then(() => (synced = true));
		inf.start();
		await api.until('the first failed list', () => api.lists >= 1 && warnings.length >= 1);
		assert.equal(inf.isSynced, false, 'not synced on a failed list');
		assert.equal(synced, false);
		assert.match(inf.lastError ?? '', /500|request timed out/, 'the failure is the last error');
		await inf.synced;
		assert.equal(api.lists, 4, 'synced after the fourth list, the first that succeeded');
		assert.equal(inf.isSynced, true);
		assert.equal(inf.restarts, 3);
		assert.deepEqual(
			warnings.map((w) => w.retryInMs),
			[20, 40, 80],
			'each retry waits longer, up to the cap',
		);
		assert.equal(inf.lastError, undefined, 'cleared once listed');
		assert.deepEqual(names(), ['a']);
		assert.ok(changes > 0, 'the change callback ran');
		await api.until('the watch from the list version', () => api.watching);
		assert.equal(api.watches[0]!.resourceVersion, '10');
	});

	test('a watch that the server ends and then refuses: restarted with backoff from the last version, the cache kept', LIMIT, async () => {
		inf.start();
		await inf.synced;
		await api.until('watching', () => api.watching);
		api.event('ADDED', 'b');
		await api.until('b in the cache', () => names().includes('b'));
		const lists = api.lists;
		api.watchPlan = [500, 500];
		api.closeWatch();
		await api.until('the second refused watch', () => api.watches.filter((w) => w.status === 500).length === 2);
		assert.deepEqual(names(), ['a', 'b'], 'the cache is kept while the watch fails');
		assert.ok(inf.lastError, 'the watch failure is the last error');
		await api.until('watching again', () => api.watching && inf.lastError === undefined);
		assert.equal(inf.restarts, 2);
		assert.deepEqual(
			warnings.map((w) => w.retryInMs),
			[20, 40],
		);
		assert.equal(api.lists, lists, 'no relist: the watch resumes from its version');
		assert.deepEqual([...new Set(api.watches.slice(1).map((w) => w.resourceVersion))], ['11'], 'every retry resumes from the last event');
		api.event('MODIFIED', 'b');
		api.event('ADDED', 'c');
		await api.until('c in the cache', () => names().includes('c'));
		assert.deepEqual(names(), ['a', 'b', 'c']);
		// After a recovery the backoff starts over.
		api.watchPlan = [503];
		api.closeWatch();
		await api.until('watching again', () => api.watching && api.watches.some((w) => w.status === 503));
		assert.equal(warnings.at(-1)!.retryInMs, 20);
	});

	test('410 Gone on the watch: the informer relists by itself, no restart counted', LIMIT, async () => {
		inf.start();
		await inf.synced;
		await api.until('watching', () => api.watching);
		api.items = [{ metadata: { name: 'z', resourceVersion: '30' } }];
		api.watchPlan = [410];
		api.closeWatch();
		await api.until('relisted and watching', () => api.lists === 2 && api.watching);
		await api.until('the relisted cache', () => names().join() === 'z');
		assert.equal(inf.restarts, 0);
	});

	test('stop() stops retrying and closes the watch', LIMIT, async () => {
		api.listPlan = Array(1000).fill(500);
		inf.start();
		await api.until('two failed lists', () => api.lists >= 2);
		await inf.stop();
		const lists = api.lists;
		await new Promise((r) => setTimeout(r, 300)); // several times the longest backoff
		assert.equal(api.lists, lists, 'no list after stop()');
		assert.equal(inf.isSynced, false);

		// Stopped while watching: the stream is closed and not reopened.
		api.listPlan = [];
		inf.start();
		await inf.synced; // the watch request is established (stop() during its connect is client-node's race)
		await api.until('watching', () => api.watching);
		const watches = api.watches.length;
		await inf.stop();
		await api.until('the watch closed by the client', () => !api.watching);
		await new Promise((r) => setTimeout(r, 300));
		assert.equal(api.watches.length, watches, 'no watch after stop()');
	});

	/** A second informer on the same server, for a kind that may not be served (a CRD). */
	function optional(opts: { settleAfterMs?: number } = {}) {
		const kc = new k8s.KubeConfig();
		kc.loadFromOptions({
			clusters: [{ name: 'fake', server: `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`, skipTLSVerify: true }],
			users: [{ name: 'nobody' }],
			contexts: [{ name: 'fake', cluster: 'fake', user: 'nobody' }],
			currentContext: 'fake',
		});
		const core = kc.makeApiClient(k8s.CoreV1Api);
		const seen = { infos: [] as string[], warns: [] as string[], changes: 0 };
		const log = { info: (_o: object, m: string) => void seen.infos.push(m), warn: (_o: object, m: string) => void seen.warns.push(m) };
		const i = new SupervisedInformer(
			'crs',
			kc,
			'/api/v1/namespaces',
			() => core.listNamespace(),
			log,
			() => seen.changes++,
			BACKOFF,
			{
				mayBeAbsent: true,
				absentMaxMs: 40,
				...opts,
			},
		);
		return { i, seen };
	}

	test('a kind answered 404 (its CRD absent) settles at once as none, is logged once and found when it appears', LIMIT, async () => {
		api.listPlan = [404, 404, 404, 404];
		const { i, seen } = optional();
		try {
			i.start();
			await i.settled;
			assert.equal(i.isSynced, false, 'settled, not synced');
			assert.equal(i.absent, true);
			assert.deepEqual(i.list(), [], 'nothing listed: none');
			assert.equal(seen.changes, 1, 'settling tells the consumer (a failure calls no change of its own)');
			await i.synced;
			assert.equal(api.lists, 5, 'the fifth list, once served, syncs it');
			assert.equal(seen.infos.filter((m) => /not served/.test(m)).length, 1, `one line for four 404s: ${JSON.stringify(seen.infos)}`);
			assert.deepEqual(seen.warns, [], 'a 404 is no failure');
			assert.equal(i.absent, false);
			assert.deepEqual(
				i.list().map((n) => n.metadata?.name),
				['a'],
			);
			assert.ok(seen.changes >= 2, 'the listed objects reach the consumer');
		} finally {
			await i.stop();
		}
	});

	test('another failure of such a kind does not pass for none at once: settled only after settleAfterMs', LIMIT, async () => {
		api.listPlan = Array(1000).fill(500);
		const { i, seen } = optional({ settleAfterMs: 300 });
		try {
			const t0 = Date.now();
			i.start();
			await api.until('two failed lists', () => api.lists >= 2);
			assert.equal(i.isSettled, false, 'a 500 is not "absent"');
			await i.settled;
			assert.ok(Date.now() - t0 >= 290, 'settled by the deadline');
			assert.ok(seen.warns.some((m) => /not listed yet: taken as none/.test(m)));
			assert.equal(seen.changes, 1);
		} finally {
			await i.stop();
		}
	});
});
