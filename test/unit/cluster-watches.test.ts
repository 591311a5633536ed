// ClusterWatches routes each change to the consumer of its kind, against a real HTTP
// server on 127.0.0.1 that answers every list the agent makes (empty) and holds each
// watch open so the test can push events into it: a Service or EndpointSlice event
// wakes only the services listener, a pod event only the policy listener, and the
// change that completes the sync of every watch wakes both. Istio's PeerAuthentication
// is answered 404 (its CRD absent) until a test serves it: the agent syncs without it,
// and finds it when it appears.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { ClusterWatches, PEER_AUTHENTICATIONS_PATH } from '../../src/cluster/watches.js';
import { AGENT_LIST_KINDS as KINDS } from '../helpers/watch-paths.js';

const streams = new Map<string, ServerResponse>();
/** the PeerAuthentications served, or undefined: the CRD is absent (404) */
let peerAuthentications: object[] | undefined;
let peerAuthLists = 0;
const server = createServer((req, res) => {
	const url = new URL(req.url ?? '/', 'http://x');
	if (url.pathname === PEER_AUTHENTICATIONS_PATH) {
		if (!peerAuthentications) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"kind":"Status","code":404}');
		res.writeHead(200, { 'content-type': 'application/json' });
		if (url.searchParams.get('watch') === 'true') return void res.write('');
		peerAuthLists++;
		return void res.end(
			JSON.stringify({ kind: 'PeerAuthenticationList', apiVersion: 'security.istio.io/v1', metadata: { resourceVersion: '1' }, items: peerAuthentications }),
		);
	}
	const kind = KINDS[url.pathname];
	if (!kind) return void res.writeHead(404).end();
	res.writeHead(200, { 'content-type': 'application/json' });
	if (url.searchParams.get('watch') === 'true') {
		streams.set(url.pathname, res);
		res.write('');
		return;
	}
	res.end(JSON.stringify({ kind, apiVersion: 'v1', metadata: { resourceVersion: '1' }, items: [] }));
});
after(() => {
	for (const r of streams.values()) r.destroy();
	server.closeAllConnections();
	server.close();
});

async function until(what: string, ok: () => boolean): Promise<void> {
	const end = Date.now() + 5000;
	while (!ok()) {
		if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 10));
	}
}

/** A client of the local server. */
function kubeConfig(): k8s.KubeConfig {
	const kc = new k8s.KubeConfig();
	kc.loadFromOptions({
		clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
		users: [{ name: 'u' }],
		contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
		currentContext: 'x',
	});
	return kc;
}

test('a change wakes only the consumer of its kind; completing the sync wakes both', async () => {
	await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
	const kc = kubeConfig();
	const calls = { policy: 0, services: 0 };
	const log = { info: () => {}, warn: () => {} };
	const w = new ClusterWatches(kc, log as never, { policy: () => calls.policy++, services: () => calls.services++ });
	w.start();
	try {
		await w.synced();
		await until('every watch open', () => streams.size === Object.keys(KINDS).length);
		assert.ok(calls.policy >= 1 && calls.services >= 1, `the sync of every watch woke both: ${JSON.stringify(calls)}`);
		const base = { ...calls };
		const push = (path: string, object: object): void => void streams.get(path)!.write(`${JSON.stringify({ type: 'ADDED', object })}\n`);
		push('/api/v1/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'y', resourceVersion: '2' } });
		push('/apis/discovery.k8s.io/v1/endpointslices', {
			apiVersion: 'discovery.k8s.io/v1',
			kind: 'EndpointSlice',
			metadata: { name: 's-1', namespace: 'y', resourceVersion: '3' },
			addressType: 'IPv4',
			endpoints: [],
		});
		await until('two services wake-ups', () => calls.services === base.services + 2);
		assert.equal(calls.policy, base.policy, 'a Service and an EndpointSlice compile no policy');
		push('/api/v1/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'y', resourceVersion: '4' } });
		await until('a policy wake-up', () => calls.policy === base.policy + 1);
		assert.equal(calls.services, base.services + 2, 'a pod does not wake the service controller');
	} finally {
		await w.stop();
	}
});

test('PeerAuthentication’s CRD absent: the watches sync without it, and its appearance is listed and wakes the policy controller', async () => {
	const kc = kubeConfig();
	const calls = { policy: 0, services: 0 };
	const infos: string[] = [];
	const warns: string[] = [];
	const log = { info: (_o: object, m: string) => void infos.push(m), warn: (_o: object, m: string) => void warns.push(m) };
	peerAuthentications = undefined;
	const w = new ClusterWatches(kc, log, { policy: () => calls.policy++, services: () => calls.services++ }, { initialMs: 20, maxMs: 40, jitter: 0 }, 60);
	w.start();
	try {
		await w.synced();
		assert.equal(w.isSynced, true, 'synced with the CRD absent');
		assert.equal(w.peerAuthentications.isSynced, false);
		assert.deepEqual(w.peerAuthentications.list(), [], 'none');
		await new Promise((r) => setTimeout(r, 300)); // several retries, all 404
		assert.equal(infos.filter((m) => /not served/.test(m)).length, 1, 'logged once');
		assert.deepEqual(warns, []);
		const base = { ...calls };
		peerAuthentications = [
			{
				apiVersion: 'security.istio.io/v1',
				kind: 'PeerAuthentication',
				metadata: { name: 'strict', namespace: 'y', resourceVersion: '1' },
				spec: { mtls: { mode: 'STRICT' } },
			},
		];
		await until('the CRD found and listed', () => w.peerAuthentications.list().length === 1);
		assert.equal(peerAuthLists, 1);
		await until('the policy controller woken', () => calls.policy > base.policy);
		assert.equal(calls.services, base.services, 'not the service controller');
	} finally {
		await w.stop();
		peerAuthentications = undefined;
	}
});
