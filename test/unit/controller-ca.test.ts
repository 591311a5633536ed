// weir-controller with its CA and Istio's CRDs while the API server cannot be reached:
// the relay serves regardless, the CA and the CRDs retry (the CA never listens without
// its root), and stop() ends both retry loops at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { buildController } from '../../src/controller/app.js';
import { ISTIO_CRDS_FILE } from '../../src/controller/crds.js';
import { testControllerConfig } from '../helpers/controller.js';

test('the relay serves while the CA cannot load its root nor the CRDs be created; stop() ends their retries', async () => {
	const dir = mkdtempSync(join(tmpdir(), 'weir-ctrl-'));
	try {
		// An API server on a loopback port nothing listens on.
		const kubeconfig = join(dir, 'kubeconfig');
		writeFileSync(
			kubeconfig,
			JSON.stringify({
				apiVersion: 'v1',
				kind: 'Config',
				clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:9', 'insecure-skip-tls-verify': true } }],
				users: [{ name: 'u', user: { token: 'x' } }],
				contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
				'current-context': 'c',
			}),
		);
		const c = await buildController(
			testControllerConfig(kubeconfig, {
				ca: { host: '127.0.0.1', port: 0, trustDomain: 'cluster.local', certTtlMs: 60_000, ztunnelServiceAccount: 'weir-ztunnel', audience: 'weir-ca' },
				istioCrdsFile: ISTIO_CRDS_FILE,
			}),
			pino({ level: 'silent' }),
		);
		const addr = await c.start();
		const res = await fetch(`${addr}/healthz`);
		assert.equal(res.status, 200, 'the relay answers');
		const listened = await Promise.race([c.caListening.then(() => true), new Promise((r) => setTimeout(() => r(false), 1500))]);
		assert.equal(listened, false, 'no CA without its root');
		const crds = await Promise.race([c.istioCrds.then(() => true), new Promise((r) => setTimeout(() => r(false), 10))]);
		assert.equal(crds, false, 'no CRDs without the API server');
		const t0 = Date.now();
		await c.stop();
		assert.ok(Date.now() - t0 < 2000, `stop() took ${Date.now() - t0} ms`);
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
});
