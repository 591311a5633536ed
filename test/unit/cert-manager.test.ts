// The ztunnel's certificate manager on an injected clock, signing through the real CA
// logic (in process): rotation at half-life, backoff with jitter while the CA fails,
// the old certificate served while valid, identities added and dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import type { CaClient, SignedCertificate } from '../../src/identity/ca-client.js';
import { backoffDelay, CertificateManager, renewAt, type WorkloadCertificate } from '../../src/identity/cert-manager.js';
import { parseSpiffeId } from '../../src/identity/spiffe.js';
import { x509 } from '../../src/identity/x509.js';
import { FakeClock, testCa } from '../helpers/ca-fakes.js';

const log = pino({ level: 'silent' });
const APP = 'spiffe://cluster.local/ns/c-app/sa/app';
const REDIS = 'spiffe://cluster.local/ns/d-redis/sa/redis';
const TTL = 3600_000;

test('backoff: exponential from the initial delay, capped, jittered over its upper half', () => {
	const b = { initialMs: 1000, maxMs: 60_000 };
	assert.deepEqual(
		[1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, b, () => 0)),
		[500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000],
	);
	assert.deepEqual(
		[1, 2, 7, 100].map((n) => backoffDelay(n, b, () => 0.999999)),
		[1000, 2000, 60_000, 60_000],
	);
	assert.equal(renewAt(1000, 3000), 2000);
});

async function lab() {
	const clock = new FakeClock();
	const { cluster, ca } = await testCa(TTL, () => clock.now());
	cluster.ztunnelToken('tok', 'n1');
	cluster.pods = [
		{ namespace: 'c-app', name: 'app-1', uid: 'u1', serviceAccount: 'app', nodeName: 'n1', phase: 'Running' },
		{ namespace: 'd-redis', name: 'redis-1', uid: 'u2', serviceAccount: 'redis', nodeName: 'n1', phase: 'Running' },
	];
	const sent: { csr: string; identity: string }[] = [];
	let failing = false;
	const client: CaClient = {
		async sign(csr, identity): Promise<SignedCertificate> {
			sent.push({ csr, identity });
			if (failing) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'WEIR_ERR_CA_UNREACHABLE' });
			const r = await ca.sign('tok', { csr, identity });
			return { certChain: r.certChain, trustBundle: r.trustBundle, notBefore: new Date(r.notBefore), notAfter: new Date(r.notAfter) };
		},
	};
	const changes: [string, WorkloadCertificate | undefined][] = [];
	const mgr = new CertificateManager({ ca: client, clock, random: () => 0.5, backoff: { initialMs: 1000, maxMs: 60_000 }, log });
	mgr.onChange((id, c) => changes.push([id, c]));
	return { clock, mgr, sent, changes, ca, setFailing: (f: boolean) => (failing = f) };
}

async function step(clock: FakeClock, mgr: CertificateManager, ms: number): Promise<void> {
	clock.advance(ms);
	await mgr.settled();
}

test('one certificate per identity, renewed at half-life with a fresh local key', async () => {
	const { clock, mgr, sent, changes } = await lab();
	mgr.setIdentities([parseSpiffeId(APP), parseSpiffeId(REDIS)]);
	await step(clock, mgr, 0);
	assert.deepEqual(sent.map((s) => s.identity).sort(), [APP, REDIS]);
	const first = mgr.get(APP)!;
	assert.ok(first, 'issued');
	assert.equal(mgr.state(APP)?.status, 'ready');
	// The CA saw a CSR (public key only); the private key is the manager's.
	assert.ok(sent.every((s) => s.csr.includes('CERTIFICATE REQUEST') && !s.csr.includes('PRIVATE KEY')));
	const leaf = new x509.X509Certificate(first.certChain[0]!);
	assert.equal(first.notAfter - first.notBefore, TTL + 60_000);
	const half = renewAt(first.notBefore, first.notAfter);
	assert.equal(mgr.state(APP)?.nextAttemptAt, half);

	await step(clock, mgr, half - clock.now() - 1);
	assert.equal(sent.length, 2, 'nothing before half-life');
	await step(clock, mgr, 1);
	assert.equal(sent.length, 4, 'both renewed at half-life');
	const second = mgr.get(APP)!;
	assert.notEqual(second.certChain[0], first.certChain[0]);
	assert.notEqual(second.keyPem, first.keyPem, 'a new key pair per certificate');
	assert.notEqual(new x509.X509Certificate(second.certChain[0]!).serialNumber, leaf.serialNumber);
	assert.equal(changes.filter(([id]) => id === APP).length, 2);
});

test('while the CA fails: retries back off with jitter, the old certificate is served until it expires, then a new one', async () => {
	const { clock, mgr, sent, setFailing } = await lab();
	mgr.setIdentities([parseSpiffeId(APP)]);
	await step(clock, mgr, 0);
	const first = mgr.get(APP)!;
	setFailing(true);
	await step(clock, mgr, renewAt(first.notBefore, first.notAfter) - clock.now());
	assert.equal(sent.length, 2);
	assert.equal(mgr.get(APP), first, 'the old certificate is kept');
	const st = mgr.state(APP)!;
	assert.equal(st.status, 'backoff');
	assert.match(st.lastError ?? '', /ECONNREFUSED/);
	// random() = 0.5: each delay is 3/4 of the capped exponential.
	const delays: number[] = [];
	for (let i = 0; i < 8; i++) {
		const at = mgr.state(APP)!.nextAttemptAt!;
		delays.push(at - clock.now());
		await step(clock, mgr, at - clock.now());
	}
	assert.deepEqual(delays, [750, 1500, 3000, 6000, 12_000, 24_000, 45_000, 45_000]);
	assert.equal(mgr.state(APP)!.failures, 9);
	assert.equal(mgr.get(APP), first, 'still valid, still served');

	// Past its expiry the old certificate is no longer served.
	clock.advance(first.notAfter - clock.now());
	await mgr.settled();
	assert.equal(mgr.get(APP), undefined);
	setFailing(false);
	await step(clock, mgr, mgr.state(APP)!.nextAttemptAt! - clock.now());
	const fresh = mgr.get(APP)!;
	assert.ok(fresh && fresh.notAfter > clock.now());
	assert.equal(mgr.state(APP)!.failures, 0);
	assert.equal(mgr.state(APP)!.nextAttemptAt, renewAt(fresh.notBefore, fresh.notAfter));
});

test('a refused identity backs off too; dropping an identity forgets its certificate and its timer', async () => {
	const { clock, mgr, changes } = await lab();
	const ghost = 'spiffe://cluster.local/ns/x/sa/ghost';
	mgr.setIdentities([parseSpiffeId(APP), parseSpiffeId(ghost)]);
	await step(clock, mgr, 0);
	assert.equal(mgr.state(ghost)!.status, 'backoff');
	assert.match(mgr.state(ghost)!.lastError ?? '', /no pod of ServiceAccount x\/ghost runs on node n1/);
	mgr.setIdentities([parseSpiffeId(APP)]);
	assert.equal(mgr.state(ghost), undefined);
	assert.deepEqual(mgr.identities(), [APP]);
	mgr.setIdentities([]);
	assert.equal(mgr.get(APP), undefined);
	assert.deepEqual(clock.pending(), [], 'no timer left');
	assert.deepEqual(
		changes.filter(([, c]) => c === undefined).map(([id]) => id),
		[ghost, APP],
	);
	mgr.stop();
});
