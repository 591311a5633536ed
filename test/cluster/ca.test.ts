// The workload CA against a real kube-apiserver (control-plane mode): real ServiceAccount
// tokens from the TokenRequest API bound to real pod objects (pods are assigned to nodes
// but never run: no kubelet), real TokenReview, the controller's own RBAC from
// deploy/base/ (it runs as its ServiceAccount, so least privilege is what is tested).
// Two CAs racing for the root make one; then the real weir-controller signs for a pod
// on the caller's node and refuses every bad input with its status and code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, sign as jwsSign, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import pino from 'pino';
import { clusterStatus, startCluster } from '../../hack/cluster/cluster.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { waitFor } from '../../hack/cluster/exec.js';
import { WorkloadCa } from '../../src/ca/ca.js';
import { KubeCaCluster } from '../../src/ca/kube.js';
import { CaClientError, HttpsCaClient } from '../../src/identity/ca-client.js';
import { CertificateManager, type WorkloadCertificate } from '../../src/identity/cert-manager.js';
import { createCsr, generateKeyPair } from '../../src/identity/csr.js';
import { parseSpiffeId } from '../../src/identity/spiffe.js';
import { repoRoot } from '../../src/shared/package.js';
import { tokenKubeconfig } from '../helpers/controller.js';

const NAME = 'zca';
const NS = 'weir-system';
const APP = 'spiffe://cluster.local/ns/c-app/sa/app';
const REDIS = 'spiffe://cluster.local/ns/d-redis/sa/redis';
/** short, so that the certificate manager rotates within the test */
const TTL_S = 6;

function b64url(b: Buffer | string): string {
	return Buffer.from(b).toString('base64url');
}

/** The same token with its lifetime moved into the past, signed again with the cluster's own service-account key. */
function expired(token: string, saKeyPem: string): string {
	const [h, p] = token.split('.') as [string, string];
	const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
	const now = Math.floor(Date.now() / 1000);
	const body = b64url(JSON.stringify({ ...claims, iat: now - 1200, nbf: now - 1200, exp: now - 600 }));
	const sig = jwsSign('sha256', Buffer.from(`${h}.${body}`), { key: createPrivateKey(saKeyPem), dsaEncoding: 'ieee-p1363' });
	return `${h}.${body}.${b64url(sig)}`;
}

test('workload CA with a real API server: TokenReview, pods on nodes, one root, every refusal', { timeout: 300_000 }, async (t) => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	const c = await startCluster({ name: NAME, mode: 'control-plane', log: (m) => t.diagnostic(m) });
	const pids: number[] = [];
	let ctrl: ChildProcess | undefined;
	const dir = mkdtempSync(join(tmpdir(), 'weir-ca-'));
	try {
		pids.push(...clusterStatus(NAME).processes.map((p) => p.pid));
		const admin = new k8s.KubeConfig();
		admin.loadFromFile(c.kubeconfig);
		const core = admin.makeApiClient(k8s.CoreV1Api);
		await c.kubectl([
			'apply',
			'-f',
			join(repoRoot, 'deploy/base/namespace.yaml'),
			'-f',
			join(repoRoot, 'deploy/base/controller.yaml'),
			'-f',
			join(repoRoot, 'deploy/base/ca.yaml'),
		]);
		for (const n of ['c-app', 'd-redis']) await core.createNamespace({ body: { metadata: { name: n } } });
		for (const n of ['n1', 'n2']) await core.createNode({ body: { metadata: { name: n } } });
		for (const [ns, sa] of [
			['c-app', 'app'],
			['d-redis', 'redis'],
		] as const)
			await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: sa } } });
		const pod = async (ns: string, name: string, sa: string, node: string): Promise<string> => {
			const p = await core.createNamespacedPod({
				namespace: ns,
				body: {
					metadata: { name },
					spec: { serviceAccountName: sa, nodeName: node, automountServiceAccountToken: false, containers: [{ name: 'c', image: c.images.workload }] },
				},
			});
			return p.metadata!.uid!;
		};
		const uids = {
			z1: await pod(NS, 'ztunnel-n1', 'weir-ztunnel', 'n1'),
			z2: await pod(NS, 'ztunnel-n2', 'weir-ztunnel', 'n2'),
			gone: await pod(NS, 'ztunnel-gone', 'weir-ztunnel', 'n1'),
			app: await pod('c-app', 'app-n1', 'app', 'n1'),
		};
		await pod('d-redis', 'redis-n2', 'redis', 'n2');
		const tokenFor = async (ns: string, sa: string, podName: string | undefined, uid: string | undefined, audiences = ['weir-ca']): Promise<string> => {
			const r = await core.createNamespacedServiceAccountToken({
				namespace: ns,
				name: sa,
				body: {
					spec: {
						audiences,
						expirationSeconds: 600,
						...(podName ? { boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: podName, uid: uid! } } : {}),
					},
				},
			});
			return r.status!.token;
		};
		const tokens = {
			n1: await tokenFor(NS, 'weir-ztunnel', 'ztunnel-n1', uids.z1),
			n2: await tokenFor(NS, 'weir-ztunnel', 'ztunnel-n2', uids.z2),
			gone: await tokenFor(NS, 'weir-ztunnel', 'ztunnel-gone', uids.gone),
			wrongSa: await tokenFor('c-app', 'app', 'app-n1', uids.app),
			wrongAudience: await tokenFor(NS, 'weir-ztunnel', 'ztunnel-n1', uids.z1, ['not-weir-ca']),
			unbound: await tokenFor(NS, 'weir-ztunnel', undefined, undefined),
			expired: '',
		};
		tokens.expired = expired(tokens.n1, readFileSync(join(dirname(c.kubeconfig), 'pki', 'sa.key'), 'utf8'));
		await core.deleteNamespacedPod({ namespace: NS, name: 'ztunnel-gone', gracePeriodSeconds: 0 });
		await waitFor('pod ztunnel-gone deleted', 10_000, async () =>
			(await core.listNamespacedPod({ namespace: NS, fieldSelector: 'metadata.name=ztunnel-gone' })).items.length === 0 ? true : undefined,
		);

		// What the API server's TokenReview says about a pod-bound token (recorded for docs/identity.md).
		const review = await admin.makeApiClient(k8s.AuthenticationV1Api).createTokenReview({ body: { spec: { token: tokens.n1, audiences: ['weir-ca'] } } });
		t.diagnostic(`TokenReview of a pod-bound token: ${JSON.stringify(review.status)}`);
		assert.equal(review.status?.authenticated, true);
		assert.deepEqual(review.status?.user?.extra?.['authentication.kubernetes.io/node-name'], ['n1'], 'the token names the pod’s node');

		// The controller as its own ServiceAccount, with deploy/'s RBAC only.
		const kubeconfig = tokenKubeconfig(
			admin,
			'weir-controller',
			await tokenFor(NS, 'weir-controller', undefined, undefined, []),
			join(dir, 'controller.kubeconfig'),
		);
		const ctrlKc = new k8s.KubeConfig();
		ctrlKc.loadFromFile(kubeconfig);

		// Two CAs starting at once: one root Secret, both hold it.
		const log = pino({ level: 'silent' });
		const caOpts = { trustDomain: 'cluster.local', namespace: NS, ztunnelServiceAccount: 'weir-ztunnel', audience: 'weir-ca', certTtlMs: 30_000, log };
		const [r1, r2] = await Promise.all([
			new WorkloadCa({ ...caOpts, cluster: new KubeCaCluster(ctrlKc) }).init(),
			new WorkloadCa({ ...caOpts, cluster: new KubeCaCluster(ctrlKc) }).init(),
		]);
		assert.equal(r1.certPem, r2.certPem, 'two racing CAs end with one root');

		const lines: string[] = [];
		ctrl = spawn(
			process.execPath,
			[
				join(repoRoot, 'dist/src/controller/main.js'),
				'--kubeconfig',
				kubeconfig,
				'--host',
				'127.0.0.1',
				'--port',
				'0',
				'--ca-port',
				'0',
				'--via',
				'pod-proxy',
				'--cert-ttl-seconds',
				String(TTL_S),
				'--no-istio-crds', // test/cluster/istio-crds.test.ts's
			],
			{ stdio: ['ignore', 'pipe', 'pipe'] },
		);
		pids.push(ctrl.pid!);
		let buf = '';
		ctrl.stdout!.on('data', (d: Buffer) => {
			buf += d.toString();
			const parts = buf.split('\n');
			buf = parts.pop()!;
			lines.push(...parts);
		});
		ctrl.stderr!.on('data', (d: Buffer) => t.diagnostic(`controller stderr: ${d.toString().trim()}`));
		const caUrl = await waitFor('the controller’s CA listening', 30_000, async () =>
			lines
				.find((l) => l.startsWith('weir-controller CA listening on '))
				?.split(' ')
				.pop(),
		);
		assert.ok(
			lines.some((l) => l.includes('loaded the CA root')),
			'the controller loads the existing root',
		);
		const secrets = await core.listNamespacedSecret({ namespace: NS });
		assert.deepEqual(
			secrets.items.map((s) => s.metadata!.name),
			['weir-ca-root'],
		);
		const bundle = (await core.readNamespacedConfigMap({ namespace: NS, name: 'weir-trust-bundle' })).data?.['ca.crt'];
		assert.equal(bundle, r1.certPem, 'the published trust bundle is the root');

		const client = (token: string): HttpsCaClient => {
			const f = join(dir, `token-${Math.random().toString(36).slice(2)}`);
			writeFileSync(f, token);
			return new HttpsCaClient({ url: caUrl, ca: bundle, tokenPath: f, servername: 'weir-ca.weir-system.svc' });
		};
		const csr = async (id: string): Promise<string> => createCsr(await generateKeyPair(), parseSpiffeId(id));

		// Allowed: app runs on n1 and n1's ztunnel asks; redis runs on n2 and n2's asks.
		const t0 = Date.now();
		const signed = await client(tokens.n1).sign(await csr(APP), APP);
		const leaf = new X509Certificate(signed.certChain[0]!);
		assert.equal(leaf.subjectAltName, `URI:${APP}`);
		assert.ok(leaf.verify(new X509Certificate(bundle).publicKey), 'chains to the trust bundle');
		const life = signed.notAfter.getTime() - t0;
		assert.ok(life > TTL_S * 1000 - 2000 && life <= TTL_S * 1000 + 100, `a ${TTL_S} s certificate, got ${life} ms`);
		assert.ok((await client(tokens.n2).sign(await csr(REDIS), REDIS)).certChain.length === 1);

		const refusals: [string, string, string, string, number, string][] = [
			['no pod of the identity on the requesting node', tokens.n1, await csr(REDIS), REDIS, 403, 'WEIR_ERR_CA_NO_POD_ON_NODE'],
			['a token of the wrong ServiceAccount', tokens.wrongSa, await csr(APP), APP, 403, 'WEIR_ERR_CA_WRONG_SERVICE_ACCOUNT'],
			['a token not bound to a pod', tokens.unbound, await csr(APP), APP, 403, 'WEIR_ERR_CA_TOKEN_NOT_POD_BOUND'],
			['an expired token', tokens.expired, await csr(APP), APP, 401, 'WEIR_ERR_CA_TOKEN_INVALID'],
			['a token whose pod was deleted', tokens.gone, await csr(APP), APP, 401, 'WEIR_ERR_CA_TOKEN_INVALID'],
			['a token for another audience', tokens.wrongAudience, await csr(APP), APP, 401, 'WEIR_ERR_CA_TOKEN_INVALID'],
			['a garbage token', 'not-a-token', await csr(APP), APP, 401, 'WEIR_ERR_CA_TOKEN_INVALID'],
			['a malformed CSR', tokens.n1, '-----BEGIN CERTIFICATE REQUEST-----\nMIIBnope\n-----END CERTIFICATE REQUEST-----\n', APP, 400, 'WEIR_ERR_CA_BAD_CSR'],
			[
				'a CSR whose SAN is not the requested identity',
				tokens.n1,
				await csr('spiffe://cluster.local/ns/c-app/sa/other'),
				APP,
				400,
				'WEIR_ERR_CA_CSR_IDENTITY_MISMATCH',
			],
		];
		for (const [what, token, csrPem, identity, status, code] of refusals) {
			const err = await client(token)
				.sign(csrPem, identity)
				.then(() => undefined)
				.catch((e: unknown) => e);
			assert.ok(err instanceof CaClientError, `${what}: refused (${String(err)})`);
			assert.deepEqual([err.status, err.code], [status, code], `${what}: ${err.message}`);
			t.diagnostic(`${what}: ${status} ${code}: ${err.message}`);
		}
		// The ztunnel's certificate manager on the real clock: a certificate, then a new one at half-life while the old is still valid.
		const mgr = new CertificateManager({ ca: client(tokens.n1), backoff: { initialMs: 200, maxMs: 1000 } });
		const got: [number, WorkloadCertificate | undefined][] = [];
		mgr.onChange((_id, cert) => got.push([Date.now(), cert]));
		mgr.setIdentities([parseSpiffeId(APP)]);
		await waitFor('a rotated certificate', 20_000, async () => (got.length >= 2 ? true : undefined));
		mgr.stop();
		const [[, a], [rotatedAt, b]] = got as [[number, WorkloadCertificate], [number, WorkloadCertificate]];
		assert.notEqual(a.certChain[0], b.certChain[0]);
		assert.notEqual(a.keyPem, b.keyPem);
		assert.ok(rotatedAt < a.notAfter, 'renewed while the first was still valid');
		const half = a.notBefore + (a.notAfter - a.notBefore) / 2;
		assert.ok(rotatedAt >= half - 50 && rotatedAt < half + 2000, `renewed at half-life (${rotatedAt - half} ms after it)`);
		t.diagnostic(`certificate manager: renewed ${rotatedAt - half} ms after half-life, ${a.notAfter - rotatedAt} ms before the first expired`);

		// Each refusal is one log line with its code and context; the deny for the other node names the node.
		const logged = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { component?: string; code?: string; node?: string; identity?: string });
		for (const [, , , , , code] of refusals)
			assert.ok(
				logged.some((l) => l.component === 'ca' && l.code === code),
				`logged: ${code}`,
			);
		assert.ok(logged.some((l) => l.code === 'WEIR_ERR_CA_NO_POD_ON_NODE' && l.node === 'n1' && l.identity === REDIS));
		assert.equal(
			logged.filter((l) => l.component === 'ca' && (l as { msg?: string }).msg === 'signed a workload certificate').length,
			4,
			'two certificates signed, and two for the manager; no more',
		);
	} finally {
		if (ctrl && ctrl.exitCode === null) {
			const exited = new Promise((r) => ctrl!.once('exit', r));
			ctrl.kill('SIGTERM');
			await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
			if (ctrl.exitCode === null) ctrl.kill('SIGKILL');
		}
		rmSync(dir, { recursive: true, force: true });
		const rep = await c.stop();
		assert.deepEqual(rep.left, []);
	}
	assert.deepEqual(await leftovers(NAME, pids), []);
});
