// HBONE end to end on loopback with real certificates: the outbound proxy of node a
// tunnels captured connections to node b's inbound server, which checks identities
// and delivers from the client pod's address. The kernel side (capture, transparent
// connect) is tested in test/kernel/ztunnel-capture.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2connect } from 'node:http2';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { HboneLab, LocalCa, NODE_IP, TD, readAll, waitFor, type LabPod } from '../helpers/hbone-lab.js';
import { HboneError, identitySni, forwardedFor, identityFromSni, parseAuthority, peerIdentity } from '../../src/ztunnel/proxy/hbone.js';
import { parseSpiffeId } from '../../src/identity/spiffe.js';
import { CertificateManager } from '../../src/identity/cert-manager.js';

const PODS: LabPod[] = [
	{ ns: 'x', name: 'client', sa: 'client', node: 'a', ip: '127.0.1.1' },
	{ ns: 'x', name: 'other', sa: 'other', node: 'a', ip: '127.0.1.3' },
	{ ns: 'y', name: 'server', sa: 'server', node: 'b', ip: '127.0.1.2' },
	{ ns: 'y', name: 'local', sa: 'local', node: 'a', ip: '127.0.1.4' },
	{ ns: 'z', name: 'plain', sa: 'default', node: 'b', ip: '127.0.1.5', meshed: false },
];
const id = (ns: string, sa: string): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

test('HBONE on loopback', async (t) => {
	const lab = await HboneLab.start(PODS);
	t.after(() => lab.stop());
	const serverPort = await lab.podServer('127.0.1.2');

	await t.test('a captured connection reaches the pod over mTLS, from the client pod address, bytes both ways', async () => {
		const app = await lab.nodes.a.capture('127.0.1.1', { address: '127.0.1.2', port: serverPort });
		const first = await readAll(app, (d) => d.includes('\n'));
		assert.equal(first.data, 'peer 127.0.1.1\n', 'the pod sees the client pod, not a node');
		const big = 'x'.repeat(1 << 20);
		app.write(big);
		const echoed = await readAll(app, (d) => d.length >= big.length);
		assert.equal(echoed.data.length, big.length);
		app.end();
		await waitFor(() => lab.nodes.b.observer.events.some((e) => e.kind === 'closed'), 'inbound close');
		const opened = lab.nodes.b.observer.events.find((e) => e.kind === 'opened')!;
		assert.equal(opened.c.source.identity, id('x', 'client'));
		assert.equal(opened.c.destination.identity, id('y', 'server'));
		assert.equal(opened.c.security, 'mutual_tls');
		const closed = lab.nodes.b.observer.events.find((e) => e.kind === 'closed')!;
		assert.equal(closed.r!.sent, big.length, 'bytes client → pod');
		assert.ok(closed.r!.received >= big.length, 'bytes pod → client');
		await waitFor(() => lab.nodes.a.observer.events.some((e) => e.kind === 'closed'), 'outbound close');
		const text = await lab.nodes.b.metrics.registry.metrics();
		assert.match(
			text,
			/istio_tcp_connections_opened_total\{reporter="destination",source_workload="client",source_workload_namespace="x",source_principal="spiffe:\/\/cluster.local\/ns\/x\/sa\/client",.*destination_principal="spiffe:\/\/cluster.local\/ns\/y\/sa\/server".*connection_security_policy="mutual_tls".*\} 1/,
		);
		assert.match(text, new RegExp(`istio_tcp_sent_bytes_total\\{reporter="destination".*\\} ${big.length}`));
	});

	await t.test('half-close passes through: a client that ends its side still gets the whole answer', async () => {
		const app = await lab.nodes.a.capture('127.0.1.1', { address: '127.0.1.2', port: serverPort });
		app.write('last words');
		app.end();
		const r = await readAll(app);
		assert.equal(r.data, 'peer 127.0.1.1\nlast words', 'the echo after the FIN arrived');
		assert.ok(r.ended);
	});

	await t.test('many connections share one pooled HBONE connection per (source, destination identity, node)', async () => {
		const apps = await Promise.all(Array.from({ length: 20 }, () => lab.nodes.a.capture('127.0.1.1', { address: '127.0.1.2', port: serverPort })));
		const other = await lab.nodes.a.capture('127.0.1.3', { address: '127.0.1.2', port: serverPort });
		for (const a of [...apps, other]) assert.match((await readAll(a, (d) => d.includes('\n'))).data, /^peer 127\.0\.1\.[13]\n$/);
		const stats = lab.nodes.a.pool.stats();
		const client = stats.find((s) => s.key.startsWith(id('x', 'client')))!;
		assert.equal(client.connections, 1, JSON.stringify(stats));
		assert.equal(client.streams, 20);
		assert.equal(stats.find((s) => s.key.startsWith(id('x', 'other')))?.connections, 1, 'another source identity gets its own connection');
		for (const a of [...apps, other]) a.destroy();
		await waitFor(() => lab.nodes.a.pool.stats().every((s) => s.streams === 0), 'streams released');
	});

	await t.test('two pods of one node go through the local path, still authenticated', async () => {
		const port = await lab.podServer('127.0.1.4');
		const app = await lab.nodes.a.capture('127.0.1.1', { address: '127.0.1.4', port });
		assert.equal((await readAll(app, (d) => d.includes('\n'))).data, 'peer 127.0.1.1\n');
		app.destroy();
		assert.ok(lab.nodes.a.observer.events.some((e) => e.kind === 'opened' && e.c.direction === 'inbound' && e.c.source.identity === id('x', 'client')));
	});

	await t.test('authorization denies at the destination: 403, the client connection is reset', async () => {
		lab.authorize = (i) =>
			i.source.identity === id('x', 'other')
				? { allowed: false, reason: 'denied by DENY policy y/no-other rule 0', policy: 'y/no-other' }
				: { allowed: true, reason: 'ok' };
		t.after(() => (lab.authorize = () => ({ allowed: true, reason: 'ok' })));
		const app = await lab.nodes.a.capture('127.0.1.3', { address: '127.0.1.2', port: serverPort });
		const r = await readAll(app);
		assert.equal(r.data, '', 'nothing from the pod');
		assert.ok(r.ended);
		const refused = lab.nodes.a.observer.events.find((e) => e.kind === 'refused' && e.c.source.ip === '127.0.1.3');
		assert.match(refused!.reason!, /answered 403 .*denied by DENY policy y\/no-other rule 0/);
		assert.ok(lab.nodes.b.observer.events.some((e) => e.kind === 'refused' && e.code === '403'));
		assert.match(await lab.nodes.b.metrics.registry.metrics(), /weir_ztunnel_refused_connections_total\{direction="inbound",code="403"\} 1/);
		// the allowed source still works
		const ok = await lab.nodes.a.capture('127.0.1.1', { address: '127.0.1.2', port: serverPort });
		assert.equal((await readAll(ok, (d) => d.includes('\n'))).data, 'peer 127.0.1.1\n');
		ok.destroy();
	});

	const b = lab.nodes.b;
	/** A TLS connection to node b's HBONE port naming y/server, checked by `check`. */
	const rawTls = (cert: NonNullable<ReturnType<CertificateManager['get']>>, check: (host: string, c: PeerCertificate) => Error | undefined) =>
		tlsConnect({
			host: NODE_IP.b,
			port: lab.port,
			servername: identitySni(parseSpiffeId(id('y', 'server'))),
			cert: cert.certChain.join('\n'),
			key: cert.keyPem,
			ca: cert.trustBundle,
			ALPNProtocols: ['h2'],
			checkServerIdentity: check,
		});
	const clientCert = (): ReturnType<CertificateManager['get']> => lab.nodes.a.certs.get(id('x', 'client'));
	const open = (o: { authority: string; clientIp: string; dst?: string; cert?: ReturnType<CertificateManager['get']> }) =>
		lab.nodes.a.pool.open({
			cert: o.cert ?? clientCert()!,
			destinationIdentity: o.dst ?? id('y', 'server'),
			node: { address: NODE_IP.b, port: lab.port },
			authority: o.authority,
			clientIp: o.clientIp,
			timeoutMs: 3000,
		});

	await t.test('a client claiming another identity’s pod address is refused (401)', async () => {
		await assert.rejects(
			open({ authority: `127.0.1.2:${serverPort}`, clientIp: '127.0.1.3' }),
			(e: HboneError) =>
				e.code === 'WEIR_ERR_HBONE_REFUSED' &&
				/401.*127\.0\.1\.3 is spiffe:\/\/cluster.local\/ns\/x\/sa\/other, not the authenticated spiffe:\/\/cluster.local\/ns\/x\/sa\/client/.test(e.message),
		);
	});

	await t.test('an address that is not a meshed workload of the node is refused (404), as is one of another identity (421)', async () => {
		await assert.rejects(open({ authority: `127.0.1.5:80`, clientIp: '127.0.1.1' }), /answered 404 .*127\.0\.1\.5 is not a meshed workload on node b/);
		await assert.rejects(open({ authority: `127.0.1.9:80`, clientIp: '127.0.1.1' }), /answered 404/);
		await assert.rejects(open({ authority: `127.0.1.1:80`, clientIp: '127.0.1.1' }), /answered 404/, 'a pod of node a is not node b’s to deliver');
	});

	await t.test('a destination ztunnel without the named identity’s certificate fails the handshake', async () => {
		await assert.rejects(
			open({ authority: `127.0.1.2:${serverPort}`, clientIp: '127.0.1.1', dst: id('y', 'nobody') }),
			(e: HboneError) => e.code === 'WEIR_ERR_HBONE_CONNECT',
		);
	});

	await t.test('a client certificate from another root is rejected at the handshake', async () => {
		const rogue = await LocalCa.create();
		const m = new CertificateManager({ ca: rogue });
		m.setIdentities([parseSpiffeId(id('x', 'client'))]);
		await waitFor(() => !!m.get(id('x', 'client')), 'rogue certificate');
		// The rogue client trusts the real root (so only the server's check of the client certificate decides).
		const cert = { ...m.get(id('x', 'client'))!, trustBundle: clientCert()!.trustBundle };
		const tunnel = (c: NonNullable<ReturnType<CertificateManager['get']>>) =>
			lab.tunnel({ cert: c, destinationIdentity: id('y', 'server'), authority: `127.0.1.2:${serverPort}`, clientIp: '127.0.1.1' });
		await assert.rejects(tunnel(cert), (e: HboneError) => ['WEIR_ERR_HBONE_CONNECT', 'WEIR_ERR_HBONE_STREAM'].includes(e.code));
		// The same request with the real certificate works: the refusal was the root.
		(await tunnel(clientCert()!)).close();
		m.stop();
	});

	await t.test('a server presenting another identity than the one named is not trusted by the client', async () => {
		// node b's server for y/server answers a connection naming x/client? No: ask node a's server (which holds x/client) while expecting y/server.
		await assert.rejects(
			lab.nodes.a.pool.open({
				cert: clientCert()!,
				destinationIdentity: id('y', 'server'),
				node: { address: NODE_IP.a, port: lab.port },
				authority: `127.0.1.4:1`,
				clientIp: '127.0.1.1',
				timeoutMs: 3000,
			}),
			(e: HboneError) => e.code === 'WEIR_ERR_HBONE_CONNECT',
			'node a holds no y/server certificate: the handshake fails before any stream',
		);
		// Raw TLS: ask node b for y/server's certificate but expect x/client's identity.
		const cert = clientCert()!;
		const err = await new Promise<Error | undefined>((resolve) => {
			const s = rawTls(cert, (_h, c) => (peerIdentity(c, TD) === id('x', 'client') ? undefined : new Error(`presented ${peerIdentity(c, TD)}`)));
			s.once('secureConnect', () => {
				s.destroy();
				resolve(undefined);
			});
			s.once('error', resolve);
		});
		assert.match(String(err?.message), /presented spiffe:\/\/cluster.local\/ns\/y\/sa\/server/);
	});

	await t.test('a request that is not CONNECT gets 400', async () => {
		const cert = clientCert()!;
		const session = h2connect(`https://${NODE_IP.b}:${lab.port}`, {
			createConnection: () => rawTls(cert, () => undefined),
		});
		t.after(() => session.close());
		const status = await new Promise<number>((resolve, reject) => {
			const req = session.request({ ':method': 'GET', ':path': '/' });
			req.on('response', (h) => resolve(Number(h[':status'])));
			req.on('error', reject);
			req.end();
		});
		assert.equal(status, 400);
		const noFor = await new Promise<number>((resolve, reject) => {
			const req = session.request({ ':method': 'CONNECT', ':authority': `127.0.1.2:${serverPort}` });
			req.on('response', (h) => resolve(Number(h[':status'])));
			req.on('error', reject);
		});
		assert.equal(noFor, 400);
	});

	await t.test('the destination going away mid-stream ends the client connection, and the pump reports it', async () => {
		const port = await lab.podServer('127.0.1.2');
		const app = await lab.nodes.a.capture('127.0.1.1', { address: '127.0.1.2', port });
		await readAll(app, (d) => d.includes('\n'));
		const before = b.observer.events.filter((e) => e.kind === 'closed').length;
		const inboundOpen = b.observer.events.filter((e) => e.kind === 'opened').length;
		assert.ok(inboundOpen > 0);
		app.end();
		await waitFor(() => b.observer.events.filter((e) => e.kind === 'closed').length > before, 'close seen at the destination');
	});
});

test('HBONE helpers: SNI, authority, forwarded, peer identity', () => {
	const sa = parseSpiffeId('spiffe://cluster.local/ns/ns1/sa/my.sa');
	assert.equal(identitySni(sa), 'my.sa.ns1.weir-identity.invalid');
	assert.deepEqual(identityFromSni('my.sa.ns1.weir-identity.invalid', TD), sa);
	assert.equal(identityFromSni('example.com', TD), undefined);
	assert.equal(identityFromSni('x.Bad_NS.weir-identity.invalid', TD), undefined);
	assert.deepEqual(parseAuthority('10.0.0.1:80'), { address: '10.0.0.1', port: 80 });
	for (const bad of ['10.0.0.256:80', '10.0.0.1:0', '10.0.0.1:65536', 'host:80', '10.0.0.1', '[::1]:80']) assert.equal(parseAuthority(bad), undefined, bad);
	assert.equal(forwardedFor('for=10.1.2.3'), '10.1.2.3');
	assert.equal(forwardedFor('proto=https;for="10.1.2.3"'), '10.1.2.3');
	assert.equal(forwardedFor('for=unknown'), undefined);
	assert.equal(forwardedFor(undefined), undefined);
	assert.equal(peerIdentity({ subjectaltname: 'URI:spiffe://cluster.local/ns/a/sa/b' }, TD), 'spiffe://cluster.local/ns/a/sa/b');
	assert.throws(() => peerIdentity({ subjectaltname: 'DNS:x, URI:spiffe://cluster.local/ns/a/sa/b, URI:spiffe://cluster.local/ns/a/sa/c' }, TD), /2 URI SANs/);
	assert.throws(() => peerIdentity({ subjectaltname: 'URI:spiffe://other.domain/ns/a/sa/b' }, TD), /not a workload of trust domain cluster.local/);
	assert.throws(() => peerIdentity({ subjectaltname: 'DNS:a' }, TD), /0 URI SANs/);
});
