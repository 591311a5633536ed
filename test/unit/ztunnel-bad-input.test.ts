// The ztunnel's HBONE server and client under bad input, and graceful drain, on the
// loopback lab with real certificates (test/helpers/hbone-lab.ts). Every bad input is
// sent for real to the real InboundServer; each case checks that it is refused, logged
// with its context (pino lines read back), counted (the Prometheus registry), that the
// server is left with no connection, session or stream of it, and that a legitimate
// client is served afterwards. docs/ztunnel.md, "Bad input" and "Drain", is the table
// these cases check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { createSecureServer } from 'node:http2';
import { HboneLab, LocalCa, NODE_IP, TD, captureLog, readAll, waitFor, type LabPod } from '../helpers/hbone-lab.js';
import { FRAME, H2_ERROR, RawH2, connectHeaders } from '../helpers/h2-raw.js';
import { HBONE_TLS, identitySni, type HboneError } from '../../src/ztunnel/proxy/hbone.js';
import { HbonePool } from '../../src/ztunnel/proxy/pool.js';
import { parseSpiffeId } from '../../src/identity/spiffe.js';
import type { WorkloadCertificate } from '../../src/identity/cert-manager.js';
import type { ZtunnelMetrics } from '../../src/ztunnel/metrics.js';
import { DEFAULT_DRAIN_MS, drain } from '../../src/ztunnel/drain.js';
import { repoRoot } from '../../src/shared/package.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

const PODS: LabPod[] = [
	{ ns: 'x', name: 'client', sa: 'client', node: 'a', ip: '127.0.1.1' },
	{ ns: 'x', name: 'other', sa: 'other', node: 'a', ip: '127.0.1.3' },
	{ ns: 'y', name: 'server', sa: 'server', node: 'b', ip: '127.0.1.2' },
	{ ns: 'y', name: 'local', sa: 'local', node: 'a', ip: '127.0.1.4' },
];
const id = (ns: string, sa: string): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`;
const SERVER_SNI = identitySni(parseSpiffeId(id('y', 'server')));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The value of a counter for the labels given (0 when never counted). */
async function counter(m: ZtunnelMetrics, name: string, labels: Record<string, string>): Promise<number> {
	const got = await m.registry.getSingleMetric(name)?.get();
	const v = got?.values.find((x) => Object.entries(labels).every(([k, want]) => String(x.labels[k]) === want));
	return v?.value ?? 0;
}

/** A pod server that counts the connections delivered to it and echoes. */
async function countingPod(ip: string): Promise<{ port: number; accepted: () => number; server: Server }> {
	let n = 0;
	const server = createNetServer((c) => {
		n++;
		c.on('error', () => undefined);
		c.write(`peer ${c.remoteAddress}\n`);
		c.pipe(c);
	});
	await new Promise<void>((r) => server.listen(0, ip, r));
	return { port: (server.address() as AddressInfo).port, accepted: () => n, server };
}

/** TLS to node b's HBONE port as `cert` (defaults: SNI of y/server, ALPN h2, from node a's address). */
function tlsTo(port: number, cert: WorkloadCertificate | undefined, o: ConnectionOptions & { localAddress?: string } = {}): TLSSocket {
	const s = tlsConnect({
		host: NODE_IP.b,
		port,
		localAddress: NODE_IP.a,
		servername: SERVER_SNI,
		ALPNProtocols: ['h2'],
		checkServerIdentity: () => undefined,
		...(cert ? { cert: cert.certChain.join('\n'), key: cert.keyPem, ca: cert.trustBundle } : {}),
		...o,
	});
	s.on('error', () => undefined);
	return s;
}

function secure(s: TLSSocket): Promise<void> {
	return new Promise((resolve, reject) => {
		s.once('secureConnect', () => resolve());
		s.once('error', reject);
	});
}

function closed(s: Socket, timeoutMs = 5000): Promise<{ afterMs: number; error?: string }> {
	const t0 = Date.now();
	return new Promise((resolve, reject) => {
		if (s.destroyed) return resolve({ afterMs: 0 });
		let error: string | undefined;
		s.resume(); // read, so that the server's end is seen
		s.on('error', (e: Error & { code?: string }) => (error = e.code ?? e.message));
		const timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs);
		s.once('close', () => {
			clearTimeout(timer);
			resolve({ afterMs: Date.now() - t0, ...(error ? { error } : {}) });
		});
	});
}

test('the HBONE server under bad input', async (t) => {
	const cap = captureLog();
	const lab = await HboneLab.start(PODS, { log: cap.log, limits: { handshakeTimeoutMs: 300, idleTimeoutMs: 300 } });
	t.after(() => lab.stop());
	const b = lab.nodes.b;
	const pod = await countingPod('127.0.1.2');
	t.after(() => pod.server.close());
	const clientCert = (): WorkloadCertificate => lab.nodes.a.certs.get(id('x', 'client'))!;
	const logged = (reason: string): Record<string, unknown>[] => cap.lines.filter((l) => l['reason'] === reason || l['status'] === Number(reason));
	const rejected = (reason: string): Promise<number> => counter(b.metrics, 'weir_ztunnel_rejected_handshakes_total', { reason });
	const refused = (code: string): Promise<number> => counter(b.metrics, 'weir_ztunnel_refused_connections_total', { direction: 'inbound', code });
	const resets = (reason: string): Promise<number> => counter(b.metrics, 'weir_ztunnel_hbone_stream_resets_total', { reason });
	const terminated = (reason: string): Promise<number> => counter(b.metrics, 'weir_ztunnel_hbone_sessions_terminated_total', { reason });

	/** One CONNECT as x/client on a pool of its own (so no connection is kept from before). */
	const open = (authority: string, clientIp: string, cert = clientCert()) => lab.tunnel({ cert, destinationIdentity: id('y', 'server'), authority, clientIp });
	const legit = async (): Promise<void> => {
		const s = await open(`127.0.1.2:${pod.port}`, '127.0.1.1');
		const r = await readAll(s as unknown as Socket, (d) => d.includes('\n'));
		assert.equal(r.data, 'peer 127.0.1.1\n', 'a legitimate client is served');
		s.close();
	};
	/** Nothing of the bad client is left on the server. */
	const settled = (): Promise<void> =>
		waitFor(
			() => {
				const s = b.inbound.stats();
				return s.connections === 0 && s.sessions === 0 && s.streams === 0;
			},
			`node b without connections (now ${JSON.stringify(b.inbound.stats())})`,
		);
	const after = async (): Promise<void> => {
		await settled();
		await legit();
		await settled();
	};

	await t.test('1. a client certificate of another CA: closed after the handshake, warned with the identity it claims, counted', async () => {
		const rogue = await LocalCa.create();
		const cert = { ...(await rogue.issueAt(id('x', 'client'), Date.now())), trustBundle: clientCert().trustBundle };
		const s = tlsTo(lab.port, cert);
		await secure(s); // TLS 1.3: the client is done before the server checked its certificate
		await closed(s);
		assert.equal(await rejected('untrusted_certificate'), 1);
		const [line] = logged('untrusted_certificate');
		assert.equal(line?.['level'], 40, 'a warning');
		assert.equal(line?.['claimed'], id('x', 'client'));
		assert.equal(line?.['sni'], SERVER_SNI);
		assert.match(String(line?.['peer']), /^127\.0\.0\.11:\d+$/);
		assert.match(String(line?.['code']), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
		await after();
	});

	await t.test('2. an expired client certificate (the real CA code, issued two days ago for an hour): refused, counted as expired', async () => {
		const cert = await lab.ca.issueAt(id('x', 'client'), Date.now() - 48 * 3600_000);
		assert.ok(cert.notAfter < Date.now());
		await assert.rejects(
			open(`127.0.1.2:${pod.port}`, '127.0.1.1', cert),
			(e: HboneError) => ['WEIR_ERR_HBONE_CONNECT', 'WEIR_ERR_HBONE_STREAM'].includes(e.code) && /node b \(127\.0\.0\.12:\d+\)/.test(e.message),
		);
		assert.equal(await rejected('expired_certificate'), 1);
		const [line] = logged('expired_certificate');
		assert.equal(line?.['code'], 'CERT_HAS_EXPIRED');
		assert.equal(line?.['claimed'], id('x', 'client'));
		await after();
	});

	await t.test('and a client without a certificate', async () => {
		const s = tlsTo(lab.port, undefined, { ca: clientCert().trustBundle });
		await secure(s);
		await closed(s);
		assert.equal(await rejected('no_client_certificate'), 1);
		assert.equal(logged('no_client_certificate').length, 1);
		await after();
	});

	await t.test('3. identity A claiming a pod of identity B: 401, logged with both, counted', async () => {
		await assert.rejects(open(`127.0.1.2:${pod.port}`, '127.0.1.3'), /answered 401/);
		assert.equal(await refused('401'), 1);
		const [line] = logged('401');
		assert.equal(line?.['source'], id('x', 'client'));
		assert.equal(line?.['clientIp'], '127.0.1.3');
		assert.match(
			String(line?.['reason']),
			/127\.0\.1\.3 is spiffe:\/\/cluster.local\/ns\/x\/sa\/other, not the authenticated spiffe:\/\/cluster.local\/ns\/x\/sa\/client/,
		);
		await after();
	});

	await t.test('4. plain HTTP and random bytes on 15008: closed at once, counted as not TLS', async () => {
		for (const bytes of [Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.12\r\n\r\n'), Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 97 + 13) & 255))]) {
			const s = netConnect({ host: NODE_IP.b, port: lab.port, localAddress: NODE_IP.a });
			s.on('error', () => undefined);
			s.once('connect', () => s.write(bytes));
			const c = await closed(s);
			assert.ok(c.afterMs < 1000, `closed after ${c.afterMs} ms`);
		}
		assert.equal(await rejected('not_tls'), 2);
		assert.deepEqual(
			logged('not_tls').map((l) => l['code']),
			['ERR_SSL_HTTP_REQUEST', 'ERR_SSL_WRONG_VERSION_NUMBER'],
		);
		assert.deepEqual(
			logged('not_tls').map((l) => l['err']),
			['http request', 'wrong version number'],
		);
		await after();
	});

	await t.test('5. a TLS 1.2 client: protocol_version alert, counted', async () => {
		const s = tlsTo(lab.port, clientCert(), { maxVersion: 'TLSv1.2', minVersion: 'TLSv1.2' });
		await assert.rejects(secure(s), (e: Error & { code?: string }) => e.code === 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
		assert.equal(await rejected('tls_version'), 1);
		assert.equal(logged('tls_version')[0]?.['code'], 'ERR_SSL_UNSUPPORTED_PROTOCOL');
		await after();
	});

	await t.test('and a client that does not speak h2, or names an identity this node has no certificate of', async () => {
		const http1 = tlsTo(lab.port, clientCert(), { ALPNProtocols: ['http/1.1'] });
		await assert.rejects(secure(http1), (e: Error & { code?: string }) => e.code === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
		const none = tlsTo(lab.port, clientCert(), { ALPNProtocols: [] });
		await secure(none);
		await closed(none);
		assert.equal(await rejected('not_h2'), 2);
		const sni = tlsTo(lab.port, clientCert(), { servername: identitySni(parseSpiffeId(id('y', 'nobody'))) });
		await assert.rejects(secure(sni));
		assert.equal(await rejected('unknown_identity'), 1);
		const [line] = logged('unknown_identity');
		assert.equal(line?.['sni'], 'nobody.y.weir-identity.invalid');
		assert.match(String(line?.['peer']), /^127\.0\.0\.11:\d+$/, 'the peer, though the TLS socket was gone when it was logged');
		await after();
	});

	await t.test('6. a CONNECT to a pod not on this node: 404, logged, counted', async () => {
		await assert.rejects(
			open('127.0.1.4:80', '127.0.1.1'),
			/the ztunnel of node b \(127\.0\.0\.12:\d+\) answered 404 .*127\.0\.1\.4 is not a meshed workload on node b/,
		);
		assert.equal(await refused('404'), 1);
		assert.equal(logged('404')[0]?.['authority'], '127.0.1.4:80');
		await after();
	});

	await t.test('7. a CONNECT from an identity the policy denies: 403, logged with the policy, counted', async () => {
		lab.authorize = () => ({ allowed: false, reason: 'denied by DENY policy y/no-client rule 0', policy: 'y/no-client' });
		try {
			await assert.rejects(open(`127.0.1.2:${pod.port}`, '127.0.1.1'), /answered 403 .*y\/no-client/);
		} finally {
			lab.authorize = () => ({ allowed: true, reason: 'ok' });
		}
		assert.equal(await refused('403'), 1);
		assert.match(String(logged('403')[0]?.['reason']), /y\/no-client/);
		assert.equal(logged('403')[0]?.['policy'], 'y/no-client');
		await after();
	});

	/** An h2 session as x/client with no manners (test/helpers/h2-raw.ts). */
	const raw = async (o: { ackSettings?: boolean } = {}): Promise<RawH2> => {
		const s = tlsTo(lab.port, clientCert());
		await secure(s);
		const h = new RawH2(s, o);
		await waitFor(() => h.frames.some((f) => f.type === FRAME.SETTINGS), 'the server’s SETTINGS');
		return h;
	};
	const connect = (): [string, string][] => connectHeaders(`127.0.1.2:${pod.port}`, '127.0.1.1');

	await t.test('8a. rapid reset: the session is torn down with GOAWAY ENHANCE_YOUR_CALM past 100 unanswered resets', async () => {
		const h = await raw();
		const before = pod.accepted();
		let sent = 0;
		for (; sent < 1000 && !h.closed; sent++) {
			h.rst(h.open(connect()));
			if (sent % 50 === 49) await sleep(1);
		}
		await closed(h.socket);
		const goaway = h.goaway();
		assert.equal(goaway?.code, H2_ERROR.ENHANCE_YOUR_CALM, JSON.stringify(goaway));
		assert.equal(await terminated('rapid_reset'), 1);
		const counted = await resets('client_reset');
		assert.ok(counted > 100 && counted <= 110, `resets counted before the session died: ${counted} (of ${sent} sent)`);
		const delivered = pod.accepted() - before;
		assert.ok(delivered <= 10, `connections delivered to the pod for streams reset at once: ${delivered}`);
		const [line] = logged('rapid_reset');
		assert.equal(line?.['level'], 40);
		assert.ok(Number(line?.['resets']) > 100);
		assert.equal(line?.['identity'], id('x', 'client'));
		t.diagnostic(`rapid reset: ${sent} streams sent, ${counted} resets counted, session ended; ${delivered} delivered to the pod`);
		await after();
	});

	await t.test('8b. a stream flood beyond 100 concurrent streams', async (tt) => {
		await tt.test('before the client acknowledged SETTINGS: each extra stream REFUSED_STREAM, the first 100 served', async () => {
			const h = await raw({ ackSettings: false });
			const ids = Array.from({ length: 250 }, () => h.open(connect()));
			await waitFor(() => h.answered().size + h.resets().size >= 250, 'every stream answered or refused');
			assert.equal(h.answered().size, 100);
			assert.deepEqual(new Set(h.resets().values()), new Set([H2_ERROR.REFUSED_STREAM]));
			assert.deepEqual([...h.resets().keys()], ids.slice(100));
			assert.equal(b.inbound.stats().streams, 100);
			// Once a stream is free, the next one shows the 150 refused; over the budget, the session ends.
			h.rst(ids[0]!);
			await waitFor(() => b.inbound.stats().streams === 99, 'a stream closed');
			h.open(connect());
			await closed(h.socket);
			assert.equal(await resets('http2_refused'), 150);
			assert.equal(await terminated('rapid_reset'), 2);
			await after();
		});
		await tt.test('after it: HTTP/2 PROTOCOL_ERROR ends the session (Node’s choice), counted and logged', async () => {
			const h = await raw();
			await waitFor(() => h.frames.some((f) => f.type === FRAME.SETTINGS && f.flags & 1), 'the SETTINGS ACK');
			for (let i = 0; i < 250; i++) h.open(connect());
			await closed(h.socket);
			assert.equal(await terminated('protocol_error'), 1);
			assert.match(String(logged('protocol_error')[0]?.['code']), /ERR_HTTP2_ERROR/);
			await after();
		});
	});

	await t.test('8c. a header block over 16 KiB: the stream reset with ENHANCE_YOUR_CALM, the session serves on', async () => {
		const h = await raw();
		const big = h.open(connectHeaders(`127.0.1.2:${pod.port}`, '127.0.1.1', [['x-pad', 'a'.repeat(20_000)]]));
		await waitFor(() => h.resets().has(big), 'the oversized stream reset');
		assert.equal(h.resets().get(big), H2_ERROR.ENHANCE_YOUR_CALM);
		const ok = h.open(connect());
		await waitFor(() => h.answered().has(ok), 'the next stream answered');
		assert.equal(await resets('http2_refused'), 151, 'the refused stream counted when the next one arrives');
		// So is one of more than 32 header fields, however small.
		const many = h.open(
			connectHeaders(
				`127.0.1.2:${pod.port}`,
				'127.0.1.1',
				Array.from({ length: 40 }, (_, i): [string, string] => [`x-h${i}`, 'v']),
			),
		);
		await waitFor(() => h.resets().has(many), 'the stream of 43 header fields reset');
		assert.equal(h.resets().get(many), H2_ERROR.ENHANCE_YOUR_CALM);
		// 16 KiB of headers exactly still passes.
		const edge = h.open(connectHeaders(`127.0.1.2:${pod.port}`, '127.0.1.1', [['x-pad', 'a'.repeat(16_384 - 4 * 32 - 200)]]));
		await waitFor(() => h.answered().has(edge), 'a header block under the limit answered');
		h.socket.destroy();
		await after();
	});

	await t.test('8c. header blocks over 16 KiB again and again: over the budget the session ends', async () => {
		const before = await resets('http2_refused');
		const h = await raw();
		for (let i = 0; i < 120; i++) h.open(connectHeaders(`127.0.1.2:${pod.port}`, '127.0.1.1', [['x-pad', 'a'.repeat(20_000)]]));
		h.open(connect());
		await closed(h.socket);
		// (its GOAWAY may not reach the client: closing with 2 MB of the client's bytes unread makes the kernel send RST)
		assert.equal(await terminated('rapid_reset'), 3);
		assert.equal((await resets('http2_refused')) - before, 120);
		assert.equal(await resets('client_reset'), 101, 'the stream that showed the gap is not counted again');
		await after();
	});

	await t.test('8d. a client that completes TLS and sends nothing: closed by the idle timeout', async () => {
		const s = tlsTo(lab.port, clientCert());
		await secure(s);
		await waitFor(() => b.inbound.stats().sessions === 1, 'the session');
		const c = await closed(s);
		assert.ok(c.afterMs >= 200 && c.afterMs < 2000, `closed after ${c.afterMs} ms (idle timeout 300 ms)`);
		assert.equal(await terminated('idle_timeout'), 1);
		await after();
	});

	await t.test('8d. a session whose only streams were refused is idle too', async () => {
		const h = await raw();
		h.open(connectHeaders(`127.0.1.2:${pod.port}`, '127.0.1.1', [['x-pad', 'a'.repeat(20_000)]]));
		await closed(h.socket);
		assert.equal(await terminated('idle_timeout'), 2);
		await after();
	});

	await t.test('8e. a client that never finishes the TLS handshake: closed by the handshake timeout', async () => {
		for (const hello of [Buffer.alloc(0), Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])]) {
			const s = netConnect({ host: NODE_IP.b, port: lab.port, localAddress: NODE_IP.a });
			s.on('error', () => undefined);
			s.once('connect', () => hello.length && s.write(hello));
			const c = await closed(s);
			assert.ok(c.afterMs >= 250 && c.afterMs < 2000, `closed after ${c.afterMs} ms (handshake timeout 300 ms)`);
		}
		assert.equal(await rejected('handshake_timeout'), 2);
		assert.equal(logged('handshake_timeout').length, 2);
		await after();
	});

	await t.test('a flood of bad input is counted in full but logged at most 20 times a reason per 10 s', async () => {
		const before = logged('not_tls').length;
		await Promise.all(
			Array.from({ length: 40 }, async () => {
				const s = netConnect({ host: NODE_IP.b, port: lab.port, localAddress: NODE_IP.a });
				s.on('error', () => undefined);
				s.once('connect', () => s.write('GET / HTTP/1.1\r\n\r\n'));
				await closed(s);
			}),
		);
		assert.equal(await rejected('not_tls'), 42);
		assert.equal(logged('not_tls').length - before, 18, 'the 20 lines of the window: 2 before, 18 now');
		await after();
	});
});

test('why the reset budget: Node’s own rapid-reset limit, measured with the budget off', async (t) => {
	const lab = await HboneLab.start(PODS, { limits: { resetBudget: { streams: Number.MAX_SAFE_INTEGER, windowMs: 10_000 }, idleTimeoutMs: 1000 } });
	t.after(() => lab.stop());
	const s = tlsTo(lab.port, lab.nodes.a.certs.get(id('x', 'client')));
	await secure(s);
	const h = new RawH2(s);
	for (let i = 0; i < 2000; i++) {
		h.rst(h.open(connectHeaders('127.0.1.2:9', '127.0.1.1')));
		if (i % 50 === 49) await sleep(1);
	}
	await waitFor(() => h.goaway() !== undefined, 'Node’s GOAWAY');
	const g = h.goaway()!;
	t.diagnostic(`Node's limit: GOAWAY ${g.code} after stream ${g.lastStream} (${(g.lastStream + 1) / 2} streams)`);
	assert.equal(g.code, H2_ERROR.INTERNAL_ERROR);
	assert.ok(g.lastStream > 1800, `only after ~1000 resets (last stream ${g.lastStream})`);
	await sleep(300);
	assert.equal(h.closed, false, 'and Node leaves the connection open after its GOAWAY');
	assert.equal(lab.nodes.b.inbound.stats().sessions, 1);
	// Ours closes it: none of its streams is open, so it is idle.
	await closed(s);
	assert.equal(await counter(lab.nodes.b.metrics, 'weir_ztunnel_hbone_sessions_terminated_total', { reason: 'idle_timeout' }), 1);
});

test('the HBONE client against bad servers: every error has a code and names the node', async (t) => {
	const lab = await HboneLab.start(PODS);
	t.after(() => lab.stop());
	const cert = lab.nodes.a.certs.get(id('x', 'client'))!;
	const serverCert = lab.nodes.b.certs.get(id('y', 'server'))!;
	const servers: { close(): unknown }[] = [];
	t.after(() => servers.forEach((s) => s.close()));
	const listen = async (s: Server): Promise<number> => {
		servers.push(s);
		await new Promise<void>((r) => s.listen(0, NODE_IP.b, r));
		return (s.address() as AddressInfo).port;
	};
	const pool = new HbonePool({ trustDomain: TD, localAddress: NODE_IP.a });
	t.after(() => pool.close());
	const openTo = (port: number, timeoutMs = 3000) =>
		pool.open({
			cert,
			destinationIdentity: id('y', 'server'),
			node: { address: NODE_IP.b, port, name: 'b' },
			authority: '127.0.1.2:80',
			clientIp: '127.0.1.1',
			timeoutMs,
		});
	const node = (port: number): string => `node b \\(127\\.0\\.0\\.12:${port}\\)`;
	const h2Server = (presented: WorkloadCertificate, onStream: (s: import('node:http2').ServerHttp2Stream) => void): Server => {
		const s = createSecureServer({ cert: presented.certChain.join('\n'), key: presented.keyPem, ca: presented.trustBundle, requestCert: true, ...HBONE_TLS });
		s.on('stream', onStream);
		return s as unknown as Server;
	};

	let answering = 0;
	await t.test('a server that answers 503: WEIR_ERR_HBONE_REFUSED with its status and reason', async () => {
		const port = (answering = await listen(
			h2Server(serverCert, (s) => s.respond({ ':status': 503, 'x-weir-reason': 'cannot reach 127.0.1.2:80' }, { endStream: true })),
		));
		await assert.rejects(openTo(port), (e: HboneError) => {
			assert.equal(e.code, 'WEIR_ERR_HBONE_REFUSED');
			assert.match(e.message, new RegExp(`the ztunnel of ${node(port)} answered 503 to CONNECT 127\\.0\\.1\\.2:80: cannot reach 127\\.0\\.1\\.2:80`));
			return true;
		});
	});

	await t.test('a server that closes in the middle of the handshake: WEIR_ERR_HBONE_CONNECT', async () => {
		const port = await listen(createNetServer((c) => c.once('data', () => c.destroy())));
		await assert.rejects(openTo(port), (e: HboneError) => {
			assert.equal(e.code, 'WEIR_ERR_HBONE_CONNECT');
			assert.match(e.message, new RegExp(`HBONE to ${node(port)} as spiffe://cluster.local/ns/x/sa/client for spiffe://cluster.local/ns/y/sa/server failed`));
			return true;
		});
	});

	await t.test('a server that never finishes the handshake: WEIR_ERR_HBONE_TIMEOUT, for every stream waiting on it', async () => {
		const port = await listen(createNetServer((c) => c.on('error', () => undefined)));
		const t0 = Date.now();
		const both = await Promise.allSettled([openTo(port, 300), openTo(port, 300)]);
		assert.ok(Date.now() - t0 < 2000, `both failed after ${Date.now() - t0} ms`);
		for (const r of both) {
			assert.equal(r.status, 'rejected');
			const e = (r as PromiseRejectedResult).reason as HboneError;
			assert.equal(e.code, 'WEIR_ERR_HBONE_TIMEOUT');
			assert.match(e.message, new RegExp(`${node(port)} .*did not complete in 300 ms`));
		}
	});

	await t.test('a server that closes once TLS is done, before HTTP/2: an error naming the node', async () => {
		const tls = createTlsServer({ cert: serverCert.certChain.join('\n'), key: serverCert.keyPem, ...HBONE_TLS }, (s) => s.destroy());
		const port = await listen(tls as unknown as Server);
		await assert.rejects(openTo(port), (e: HboneError) => {
			assert.ok(['WEIR_ERR_HBONE_CONNECT', 'WEIR_ERR_HBONE_STREAM'].includes(e.code), e.code);
			assert.match(e.message, new RegExp(node(port)));
			return true;
		});
	});

	await t.test('a server presenting another identity: WEIR_ERR_HBONE_PEER_IDENTITY, both identities named', async () => {
		const port = await listen(h2Server(cert, () => assert.fail('no stream on an untrusted server')));
		await assert.rejects(openTo(port), (e: HboneError) => {
			assert.equal(e.code, 'WEIR_ERR_HBONE_PEER_IDENTITY');
			assert.match(e.message, new RegExp(`${node(port)} .*presented spiffe://cluster.local/ns/x/sa/client, not spiffe://cluster.local/ns/y/sa/server`));
			return true;
		});
	});

	await t.test('nothing of these is left in the pool but the idle connection to the server that answered', () => {
		assert.deepEqual(pool.stats(), [{ key: `${id('x', 'client')}|${id('y', 'server')}|${NODE_IP.b}:${answering}`, connections: 1, streams: 0 }]);
	});
});

test('drain: GOAWAY, open streams go on until the deadline, new CONNECTs are refused', async (t) => {
	await t.test('the default deadline ends 5 s before the DaemonSet’s grace period does', () => {
		const docs = parseAllDocuments(readFileSync(join(repoRoot, 'deploy/base/ztunnel.yaml'), 'utf8')).map((d) => d.toJSON() as Record<string, unknown>);
		const ds = docs.find((d) => d['kind'] === 'DaemonSet') as { spec: { template: { spec: { terminationGracePeriodSeconds: number } } } };
		assert.ok(DEFAULT_DRAIN_MS / 1000 + 5 <= ds.spec.template.spec.terminationGracePeriodSeconds);
	});

	/** A lab with one captured connection from x/client to y/server that has said hello. */
	const withStream = async (tt: { after(fn: () => unknown): void }) => {
		const cap = captureLog();
		const lab = await HboneLab.start(PODS, { log: cap.log });
		tt.after(() => lab.stop());
		const port = await lab.podServer('127.0.1.2');
		const app = await lab.nodes.a.capture('127.0.1.1', { address: '127.0.1.2', port });
		assert.equal((await readAll(app, (d) => d.includes('\n'))).data, 'peer 127.0.1.1\n');
		const echo = async (line: string): Promise<string> => {
			app.write(line);
			return (await readAll(app, (d) => d.includes(line))).data;
		};
		return { cap, lab, port, app, echo };
	};

	await t.test('inbound: the open stream flows during the drain and ends normally when its client closes; new CONNECTs are refused', async (tt) => {
		const { cap, lab, port, app, echo } = await withStream(tt);
		const b = lab.nodes.b;
		// A session opened before the drain, by a client that will ignore its GOAWAY.
		const s = tlsTo(lab.port, lab.nodes.a.certs.get(id('x', 'client')));
		await secure(s);
		const h = new RawH2(s);
		await waitFor(() => b.inbound.stats().sessions === 2, 'both sessions');
		const drained = drain([b.inbound], 5000, cap.log);
		assert.equal(b.inbound.server.listening, false, 'the listener is closed at once');
		await waitFor(() => h.goaway() !== undefined, 'GOAWAY on the idle session');
		assert.equal(h.goaway()?.code, H2_ERROR.NO_ERROR);
		// A stream the client opens after the GOAWAY is above its last stream ID: ignored (RFC 9113 §6.8), never delivered.
		const ignored = h.open(connectHeaders(`127.0.1.2:${port}`, '127.0.1.1'));
		await sleep(100);
		assert.ok(!h.answered().has(ignored) && !h.resets().has(ignored));
		assert.equal(b.inbound.stats().streams, 1, 'only the captured connection’s stream');
		// New connections: refused by the kernel; the pool's connection got GOAWAY and left the pool.
		const refused = netConnect({ host: NODE_IP.b, port: lab.port, localAddress: NODE_IP.a });
		assert.equal((await closed(refused)).error, 'ECONNREFUSED');
		await waitFor(() => lab.nodes.a.pool.stats().length === 0, 'the pooled connection out of the pool');
		const late = await lab.nodes.a.capture('127.0.1.1', { address: '127.0.1.2', port });
		assert.equal((await readAll(late)).data, '', 'a connection captured during the drain is refused');
		assert.ok(lab.nodes.a.observer.events.some((e) => e.kind === 'refused' && e.code === 'WEIR_ERR_HBONE_CONNECT' && /ECONNREFUSED/.test(e.reason ?? '')));
		// The open stream keeps flowing.
		assert.equal(await echo('during the drain\n'), 'during the drain\n');
		app.end();
		const report = await drained;
		assert.deepEqual(report.forced, {}, 'nothing left to force');
		assert.ok(report.durationMs < 5000, `drained in ${report.durationMs} ms`);
		const close = b.observer.events.find((e) => e.kind === 'closed');
		assert.equal(close?.r?.error, undefined, 'the stream ended normally');
		assert.deepEqual(b.inbound.stats(), { connections: 0, sessions: 0, streams: 0 });
		assert.ok(cap.lines.some((l) => l['msg'] === 'drained'));
	});

	await t.test('inbound: a stream still open at the deadline is torn down, counted and logged', async (tt) => {
		const { cap, lab, app } = await withStream(tt);
		const b = lab.nodes.b;
		const t0 = Date.now();
		const report = await drain([b.inbound], 300, cap.log);
		assert.ok(Date.now() - t0 >= 290 && Date.now() - t0 < 2000, `drain took ${Date.now() - t0} ms`);
		assert.deepEqual(report.forced, { inbound: 1 });
		const c = await closed(app);
		assert.ok(c.afterMs < 2000, 'the client pod’s connection ends with it');
		assert.equal(await counter(b.metrics, 'weir_ztunnel_hbone_sessions_terminated_total', { reason: 'drain_deadline' }), 1);
		assert.ok(cap.lines.some((l) => l['reason'] === 'drain_deadline' && l['streams'] === 1));
		assert.ok(cap.lines.some((l) => l['msg'] === 'drained; connections still open at the deadline were ended'));
		assert.deepEqual(b.inbound.stats(), { connections: 0, sessions: 0, streams: 0 });
	});

	await t.test('outbound: the pool refuses new streams, keeps the open one flowing, and ends it at the deadline', async (tt) => {
		const { cap, lab, port, app, echo } = await withStream(tt);
		const a = lab.nodes.a;
		const drained = drain([a.pool], 600, cap.log);
		const late = await a.capture('127.0.1.1', { address: '127.0.1.2', port });
		assert.equal((await readAll(late)).data, '');
		assert.ok(a.observer.events.some((e) => e.kind === 'refused' && e.code === 'WEIR_ERR_HBONE_CLOSED'));
		assert.equal(await echo('still here\n'), 'still here\n');
		const report = await drained;
		assert.deepEqual(report.forced, { outbound: 1 });
		await closed(app);
		assert.deepEqual(a.pool.stats(), []);
		await waitFor(() => lab.nodes.b.inbound.stats().sessions === 0, 'the destination’s session gone too');
	});

	await t.test('outbound: a pool connection whose last stream ends closes at once, and the drain is done', async (tt) => {
		const { cap, lab, app } = await withStream(tt);
		const drained = drain([lab.nodes.a.pool], 5000, cap.log);
		app.end();
		const report = await drained;
		assert.deepEqual(report.forced, {});
		assert.ok(report.durationMs < 2000, `drained in ${report.durationMs} ms`);
	});
});
