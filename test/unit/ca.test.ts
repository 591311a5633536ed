// The workload CA without an API server: CSR checks, the certificate profile, the root
// (create-if-absent, load, a corrupt Secret), and the endpoint — every refusal through
// inject(), and the allow path over real HTTPS with the ztunnel's client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { WorkloadCa } from '../../src/ca/ca.js';
import { checkCsr } from '../../src/ca/csr.js';
import { CaError } from '../../src/ca/errors.js';
import { createRoot, loadRoot } from '../../src/ca/issue.js';
import { buildCaServer, caDnsNames } from '../../src/ca/server.js';
import { HttpsCaClient, CaClientError } from '../../src/identity/ca-client.js';
import { createCsr, generateKeyPair } from '../../src/identity/csr.js';
import { parseSpiffeId } from '../../src/identity/spiffe.js';
import { x509 } from '../../src/identity/x509.js';
import { FakeCaCluster, testCa } from '../helpers/ca-fakes.js';

const log = pino({ level: 'silent' });
const ID = 'spiffe://cluster.local/ns/c-app/sa/app';

async function csrFor(identity: string): Promise<string> {
	return createCsr(await generateKeyPair(), parseSpiffeId(identity));
}

async function rawCsr(names: { type: 'url' | 'dns'; value: string }[], extra = false): Promise<string> {
	const keys = await generateKeyPair();
	const ext = names.length ? [new x509.SubjectAlternativeNameExtension(names)] : [];
	if (extra) ext.push(new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }]));
	return (await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' }, extensions: ext })).toString('pem');
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
	await assert.rejects(p, (e: unknown) => e instanceof CaError && e.code === code, code);
}

test('CSR checks: the requested identity as the one URI SAN, a valid self-signature, a key the CA signs', async () => {
	assert.ok((await checkCsr(await csrFor(ID), ID)).publicKey);
	await expectCode(checkCsr('not a csr', ID), 'WEIR_ERR_CA_BAD_CSR');
	await expectCode(checkCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', ID), 'WEIR_ERR_CA_BAD_CSR');
	const good = await csrFor(ID);
	await expectCode(checkCsr(good + good, ID), 'WEIR_ERR_CA_BAD_CSR');
	// A flipped byte in the signature: the request no longer verifies.
	const der = Buffer.from(x509.PemConverter.decode(good)[0]!);
	der[der.length - 3] = der[der.length - 3]! ^ 0x55;
	await expectCode(checkCsr(x509.PemConverter.encode(der, 'CERTIFICATE REQUEST'), ID), 'WEIR_ERR_CA_BAD_CSR');
	await expectCode(checkCsr(await csrFor('spiffe://cluster.local/ns/c-app/sa/other'), ID), 'WEIR_ERR_CA_CSR_IDENTITY_MISMATCH');
	await expectCode(checkCsr(await rawCsr([]), ID), 'WEIR_ERR_CA_CSR_IDENTITY_MISMATCH');
	await expectCode(
		checkCsr(
			await rawCsr([
				{ type: 'url', value: ID },
				{ type: 'dns', value: 'app.c-app.svc' },
			]),
			ID,
		),
		'WEIR_ERR_CA_CSR_IDENTITY_MISMATCH',
	);
	await expectCode(checkCsr(await rawCsr([{ type: 'url', value: ID }], true), ID), 'WEIR_ERR_CA_CSR_IDENTITY_MISMATCH');
	assert.ok(await checkCsr(await rawCsr([{ type: 'url', value: ID }]), ID));
	// An RSA key too small to sign for.
	const rsa = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 1024 };
	const small = (await crypto.subtle.generateKey(rsa, true, ['sign', 'verify'])) as CryptoKeyPair;
	const weak = await x509.Pkcs10CertificateRequestGenerator.create({
		keys: small,
		signingAlgorithm: rsa,
		extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }])],
	});
	await expectCode(checkCsr(weak.toString('pem'), ID), 'WEIR_ERR_CA_BAD_CSR');
});

test('the root: made once with create-if-absent, reloaded, a second CA takes the first one, a corrupt Secret refused', async () => {
	const cluster = new FakeCaCluster();
	const opts = {
		cluster,
		trustDomain: 'cluster.local',
		namespace: 'weir-system',
		ztunnelServiceAccount: 'weir-ztunnel',
		audience: 'weir-ca',
		certTtlMs: 3600_000,
		log,
	};
	const [a, b] = [new WorkloadCa(opts), new WorkloadCa(opts)];
	const [ra, rb] = await Promise.all([a.init(), b.init()]);
	assert.equal(ra.certPem, rb.certPem, 'two CAs starting together share one root');
	assert.equal(cluster.secrets.size, 1);
	assert.equal(cluster.configMaps.get('weir-system/weir-trust-bundle')?.['ca.crt'], ra.certPem);
	const root = ra.cert;
	assert.equal(root.getExtension(x509.BasicConstraintsExtension)?.ca, true);
	assert.ok(await root.verify({ signatureOnly: true }));
	assert.equal((await new WorkloadCa(opts).init()).certPem, ra.certPem, 'a restart loads the same root');

	const other = await createRoot('cluster.local', Date.now());
	cluster.secrets.set('weir-system/weir-ca-root', { 'ca.crt': ra.certPem, 'ca.key': other.keyPem });
	await expectCode(new WorkloadCa(opts).init(), 'WEIR_ERR_CA_ROOT_INVALID');
	cluster.secrets.set('weir-system/weir-ca-root', { 'ca.crt': 'garbage' });
	await expectCode(new WorkloadCa(opts).init(), 'WEIR_ERR_CA_ROOT_INVALID');
	await expectCode(loadRoot(ra.certPem, ra.keyPem, root.notAfter.getTime() + 1), 'WEIR_ERR_CA_ROOT_INVALID');
});

async function lab(certTtlMs = 3600_000) {
	const { cluster, ca } = await testCa(certTtlMs);
	cluster.ztunnelToken('tok-n1', 'n1');
	cluster.ztunnelToken('tok-n2-nonode', 'n2', { withNode: false });
	cluster.ztunnelToken('tok-wrong-sa', 'n1', { sa: 'default', ns: 'c-app', pod: 'app-1' });
	cluster.pods = [
		{ namespace: 'c-app', name: 'app-1', uid: 'u1', serviceAccount: 'app', nodeName: 'n1', phase: 'Running' },
		{ namespace: 'c-app', name: 'done-1', uid: 'u2', serviceAccount: 'batch', nodeName: 'n1', phase: 'Succeeded' },
		{ namespace: 'd-redis', name: 'redis-1', uid: 'u3', serviceAccount: 'redis', nodeName: 'n2', phase: 'Running' },
		{ namespace: 'weir-system', name: 'ztunnel-n2', uid: 'uid-ztunnel-n2', serviceAccount: 'weir-ztunnel', nodeName: 'n2', phase: 'Running' },
	];
	const app = await buildCaServer(ca, log, caDnsNames('weir-system'));
	return { cluster, ca, app };
}

test('the endpoint signs for a pod on the caller’s node, and refuses everything else with a status and a code', async () => {
	const { cluster, ca, app } = await lab();
	try {
		const post = async (token: string | undefined, body: unknown) => {
			const r = await app.inject({
				method: 'POST',
				url: '/v1/certificates',
				headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
				payload: typeof body === 'string' ? body : JSON.stringify(body),
			});
			return { status: r.statusCode, body: r.json<{ code?: string; message?: string; certChain?: string[]; notAfter?: string; trustBundle?: string[] }>() };
		};
		const ok = await post('tok-n1', { csr: await csrFor(ID), identity: ID });
		assert.equal(ok.status, 200, JSON.stringify(ok.body));
		const leaf = new x509.X509Certificate(ok.body.certChain![0]!);
		assert.deepEqual(
			leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.map((n) => [n.type, n.value]),
			[['url', ID]],
		);
		assert.equal(leaf.getExtension(x509.SubjectAlternativeNameExtension)?.critical, true);
		assert.deepEqual([...(leaf.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [])].map(String).sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
		assert.equal(leaf.getExtension(x509.BasicConstraintsExtension)?.ca, false);
		assert.ok(await leaf.verify({ publicKey: ca.rootCert().cert.publicKey, signatureOnly: true }));
		const ttl = leaf.notAfter.getTime() - Date.now();
		assert.ok(ttl > 3590_000 && ttl <= 3600_000, `1 h certificate, got ${ttl} ms`);
		assert.deepEqual(ok.body.trustBundle, [ca.rootCert().certPem]);
		assert.deepEqual((await app.inject({ method: 'GET', url: '/v1/trust-bundle' })).json(), { trustBundle: [ca.rootCert().certPem] });
		assert.deepEqual(cluster.reviews.at(-1)?.audiences, ['weir-ca'], 'the token is reviewed for the CA audience');

		// The node comes from the bound pod when the token carries no node name.
		const redis = 'spiffe://cluster.local/ns/d-redis/sa/redis';
		assert.equal((await post('tok-n2-nonode', { csr: await csrFor(redis), identity: redis })).status, 200);

		const cases: [string, string | undefined, unknown, number, string][] = [
			['no pod of the identity on the node', 'tok-n1', { csr: await csrFor(redis), identity: redis }, 403, 'WEIR_ERR_CA_NO_POD_ON_NODE'],
			[
				'only a finished pod of the identity',
				'tok-n1',
				{ csr: await csrFor('spiffe://cluster.local/ns/c-app/sa/batch'), identity: 'spiffe://cluster.local/ns/c-app/sa/batch' },
				403,
				'WEIR_ERR_CA_NO_POD_ON_NODE',
			],
			['a token of another ServiceAccount', 'tok-wrong-sa', { csr: await csrFor(ID), identity: ID }, 403, 'WEIR_ERR_CA_WRONG_SERVICE_ACCOUNT'],
			['an invalid token', 'forged', { csr: await csrFor(ID), identity: ID }, 401, 'WEIR_ERR_CA_TOKEN_INVALID'],
			['no token', undefined, { csr: await csrFor(ID), identity: ID }, 401, 'WEIR_ERR_CA_NO_TOKEN'],
			[
				'a malformed CSR',
				'tok-n1',
				{ csr: '-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----', identity: ID },
				400,
				'WEIR_ERR_CA_BAD_CSR',
			],
			['a CSR for another identity', 'tok-n1', { csr: await csrFor(redis), identity: ID }, 400, 'WEIR_ERR_CA_CSR_IDENTITY_MISMATCH'],
			[
				'an identity of another trust domain',
				'tok-n1',
				{ csr: await csrFor('spiffe://evil.td/ns/c-app/sa/app'), identity: 'spiffe://evil.td/ns/c-app/sa/app' },
				400,
				'WEIR_ERR_CA_BAD_IDENTITY',
			],
			['a body without identity', 'tok-n1', { csr: 'x' }, 400, 'WEIR_ERR_CA_BAD_REQUEST'],
			['an unknown field', 'tok-n1', { csr: 'x', identity: ID, ttl: 1 }, 400, 'WEIR_ERR_CA_BAD_REQUEST'],
			['not JSON', 'tok-n1', '{"csr":', 400, 'WEIR_ERR_CA_BAD_REQUEST'],
		];
		for (const [what, token, body, status, code] of cases) {
			const r = await post(token, body);
			assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
			assert.equal(r.body.code, code, what);
			assert.ok((r.body.message ?? '').length > 20, `${what}: a message saying what to check`);
			assert.equal(r.body.certChain, undefined);
		}
		cluster.failApi = true;
		const down = await post('tok-n1', { csr: await csrFor(ID), identity: ID });
		assert.deepEqual([down.status, down.body.code], [503, 'WEIR_ERR_CA_API_UNAVAILABLE']);
	} finally {
		await app.close();
	}
});

test('the ztunnel’s HTTPS client against the endpoint on loopback (TLS 1.3, the trust bundle as its only root)', async () => {
	const { ca, app } = await lab();
	const dir = mkdtempSync(join(tmpdir(), 'weir-ca-'));
	try {
		const addr = await app.listen({ host: '127.0.0.1', port: 0 });
		writeFileSync(join(dir, 'token'), 'tok-n1\n');
		const client = new HttpsCaClient({ url: addr, ca: ca.trustBundle().join('\n'), tokenPath: join(dir, 'token'), servername: 'weir-ca.weir-system.svc' });
		const signed = await client.sign(await csrFor(ID), ID);
		assert.equal(signed.certChain.length, 1);
		assert.ok(signed.notAfter.getTime() > Date.now());
		const refused = await client
			.sign(await csrFor('spiffe://cluster.local/ns/d-redis/sa/redis'), 'spiffe://cluster.local/ns/d-redis/sa/redis')
			.catch((e: unknown) => e);
		assert.ok(refused instanceof CaClientError && refused.code === 'WEIR_ERR_CA_NO_POD_ON_NODE' && refused.status === 403, String(refused));
		// Another root: the client does not trust the server.
		const stranger = await createRoot('cluster.local', Date.now());
		const wrong = new HttpsCaClient({ url: addr, ca: stranger.certPem, tokenPath: join(dir, 'token'), servername: 'weir-ca.weir-system.svc' });
		const e = await wrong.sign(await csrFor(ID), ID).catch((err: unknown) => err);
		assert.ok(e instanceof CaClientError && e.code === 'WEIR_ERR_CA_UNREACHABLE', String(e));
	} finally {
		await app.close();
		rmSync(dir, { recursive: true, force: true });
	}
});
