// The outbound side's HBONE connections (Istio ztunnel's `pool`): one TLS 1.3 +
// HTTP/2 connection per (source identity, destination identity, destination node)
// carries many CONNECT streams; a full connection (100 streams) gets a sibling, a
// connection that fails, closes or receives GOAWAY leaves the pool, an idle one is
// closed. Concurrent first uses of a key share one handshake, which must be done within
// the request's timeout. Every error carries a WEIR_ERR_HBONE_* code and names the
// destination node. drain() refuses new streams and closes each connection when its
// last stream ends (src/ztunnel/drain.ts).
import { ClientHttp2Session, ClientHttp2Stream, connect as h2connect, constants } from 'node:http2';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import type { WorkloadCertificate } from '../../identity/cert-manager.js';
import { parseSpiffeId } from '../../identity/spiffe.js';
import { FORWARDED, HBONE_H2, HBONE_SETTINGS, HBONE_TLS, HboneError, POLICY_HEADER, REASON_HEADER, identitySni, peerIdentity } from './hbone.js';

export interface TunnelRequest {
	/** the source workload's certificate (presented to the destination) */
	cert: WorkloadCertificate;
	/** the SPIFFE ID the destination must present */
	destinationIdentity: string;
	/** destination node's address and HBONE port, and its name for messages */
	node: { address: string; port: number; name?: string };
	/** destination pod ip:port */
	authority: string;
	/** the client pod's address */
	clientIp: string;
	timeoutMs?: number;
}

interface Conn {
	key: string;
	session: ClientHttp2Session;
	streams: number;
	idle: NodeJS.Timeout | undefined;
	dead: boolean;
}

export interface PoolOptions {
	trustDomain: string;
	/** a connection without streams for this long is closed (default 30 s) */
	idleMs?: number;
	maxStreams?: number;
	/**
	 * the node's own address, bound as the source of every HBONE connection: the
	 * destination checks that the client pod runs on the node the connection comes from
	 */
	localAddress?: string;
	/** SO_MARK is not needed here: HBONE leaves from the node's namespace, which no pod program sees */
	onConnection?: (event: 'open' | 'close', key: string) => void;
}

export class HbonePool {
	private readonly conns = new Map<string, Conn[]>();
	private readonly pending = new Map<string, Promise<Conn>>();
	/** sessions still in their handshake (a drain's deadline ends them too) */
	private readonly dialing = new Set<ClientHttp2Session>();
	private closed = false;

	constructor(private readonly o: PoolOptions) {}

	/** Open connections per key (status and tests). */
	stats(): { key: string; connections: number; streams: number }[] {
		return [...this.conns].map(([key, cs]) => ({ key, connections: cs.length, streams: cs.reduce((n, c) => n + c.streams, 0) }));
	}

	/**
	 * Opens a CONNECT stream to the destination through a pooled connection. Resolves
	 * with the stream once the destination ztunnel answered 200; rejects with an
	 * HboneError carrying the status or the transport failure.
	 */
	async open(req: TunnelRequest): Promise<ClientHttp2Stream> {
		if (this.closed) throw new HboneError('WEIR_ERR_HBONE_CLOSED', `the ztunnel is draining: no new HBONE stream to ${nodeName(req.node)}`);
		const conn = await this.acquire(req);
		conn.streams++;
		if (conn.idle) clearTimeout(conn.idle);
		conn.idle = undefined;
		let stream: ClientHttp2Stream;
		try {
			stream = conn.session.request({ ':method': 'CONNECT', ':authority': req.authority, [FORWARDED]: `for=${req.clientIp}` }, { endStream: false });
		} catch (cause) {
			this.release(conn);
			throw new HboneError('WEIR_ERR_HBONE_STREAM', `cannot open a stream to ${req.authority} on ${nodeName(req.node)}: ${(cause as Error).message}`, {
				cause,
			});
		}
		stream.once('close', () => this.release(conn));
		return await new Promise<ClientHttp2Stream>((resolve, reject) => {
			const timer = setTimeout(() => {
				stream.close(constants.NGHTTP2_CANCEL);
				reject(
					new HboneError(
						'WEIR_ERR_HBONE_TIMEOUT',
						`the ztunnel of ${nodeName(req.node)} did not answer CONNECT ${req.authority} in ${req.timeoutMs ?? 10_000} ms`,
					),
				);
			}, req.timeoutMs ?? 10_000);
			stream.once('response', (headers) => {
				clearTimeout(timer);
				const status = Number(headers[':status']);
				if (status === 200) return resolve(stream);
				const reason = String(headers[REASON_HEADER] ?? '');
				const policy = headers[POLICY_HEADER];
				stream.close();
				reject(
					new HboneError(
						'WEIR_ERR_HBONE_REFUSED',
						`the ztunnel of ${nodeName(req.node)} answered ${status} to CONNECT ${req.authority}${reason ? `: ${reason}` : ''}`,
						{ status, ...(typeof policy === 'string' && policy ? { policy } : {}) },
					),
				);
			});
			stream.once('error', (err) => {
				clearTimeout(timer);
				reject(new HboneError('WEIR_ERR_HBONE_STREAM', `CONNECT ${req.authority} via ${nodeName(req.node)} failed: ${err.message}`, { cause: err }));
			});
			stream.once('close', () => {
				clearTimeout(timer);
				// (a no-op once answered or failed) e.g. the server dropped the connection after the handshake: TLS 1.3 checks the client certificate then
				reject(
					new HboneError(
						'WEIR_ERR_HBONE_STREAM',
						`the HBONE connection to ${nodeName(req.node)} closed before CONNECT ${req.authority} was answered (rst code ${stream.rstCode ?? 'none'}; a client certificate the node did not accept ends the connection so)`,
					),
				);
			});
		});
	}

	/** Ends every connection now. */
	close(): void {
		this.beginDrain();
		this.forceClose();
	}

	// Drainable (src/ztunnel/drain.ts)
	readonly name = 'outbound';

	/** Refuses new streams; idle connections close now, busy ones when their last stream ends. */
	beginDrain(): void {
		this.closed = true;
		for (const cs of this.conns.values()) for (const c of cs) if (c.streams === 0) this.kill(c);
	}

	async idle(): Promise<void> {
		while (this.conns.size > 0 || this.dialing.size > 0) await new Promise((r) => setTimeout(r, 20));
	}

	/** Tears down what is left (streams with it); returns how many connections that was. */
	forceClose(): number {
		let n = 0;
		for (const cs of [...this.conns.values()]) {
			for (const c of cs) {
				n++;
				this.drop(c);
				c.session.destroy();
			}
		}
		for (const s of this.dialing) s.destroy();
		return n;
	}

	private key(req: TunnelRequest): string {
		return `${req.cert.identity}|${req.destinationIdentity}|${req.node.address}:${req.node.port}`;
	}

	private async acquire(req: TunnelRequest): Promise<Conn> {
		const key = this.key(req);
		const max = this.o.maxStreams ?? HBONE_H2.maxConcurrentStreams;
		const free = this.conns.get(key)?.find((c) => !c.dead && !c.session.closed && !c.session.destroyed && c.streams < max);
		if (free) return free;
		const inflight = this.pending.get(key);
		if (inflight) {
			const c = await inflight;
			if (!c.dead && c.streams < max) return c;
		}
		const p = this.dial(key, req).finally(() => this.pending.delete(key));
		this.pending.set(key, p);
		return p;
	}

	private dial(key: string, req: TunnelRequest): Promise<Conn> {
		const td = this.o.trustDomain;
		const dst = parseSpiffeId(req.destinationIdentity, td);
		return new Promise<Conn>((resolve, reject) => {
			const timeoutMs = req.timeoutMs ?? 10_000;
			const session = h2connect(`https://${req.node.address}:${req.node.port}`, {
				settings: HBONE_SETTINGS,
				createConnection: () =>
					tlsConnect({
						host: req.node.address,
						port: req.node.port,
						...(this.o.localAddress ? { localAddress: this.o.localAddress } : {}),
						servername: identitySni(dst),
						cert: req.cert.certChain.join('\n'),
						key: req.cert.keyPem,
						ca: req.cert.trustBundle,
						...HBONE_TLS,
						checkServerIdentity: (_host: string, cert: PeerCertificate) => {
							try {
								const got = peerIdentity(cert, td);
								if (got !== req.destinationIdentity)
									return new HboneError('WEIR_ERR_HBONE_PEER_IDENTITY', `the node presented ${got}, not ${req.destinationIdentity}`);
								return undefined;
							} catch (err) {
								return err as Error;
							}
						},
					}),
			});
			this.dialing.add(session);
			const fail = (err: Error, code = err instanceof HboneError ? err.code : 'WEIR_ERR_HBONE_CONNECT'): void => {
				clearTimeout(timer);
				this.dialing.delete(session);
				session.destroy();
				reject(
					new HboneError(code, `HBONE to ${nodeName(req.node)} as ${req.cert.identity} for ${req.destinationIdentity} failed: ${err.message}`, { cause: err }),
				);
			};
			// A node that accepts TCP but never finishes the handshake must not hold every stream of this key.
			const timer = setTimeout(() => fail(new Error(`the TLS and HTTP/2 handshake did not complete in ${timeoutMs} ms`), 'WEIR_ERR_HBONE_TIMEOUT'), timeoutMs);
			session.once('error', fail);
			const closedEarly = (): void => fail(new Error('the connection closed during the handshake'));
			session.once('close', closedEarly);
			session.once('connect', () => {
				clearTimeout(timer);
				this.dialing.delete(session);
				session.off('error', fail);
				session.off('close', closedEarly);
				session.setLocalWindowSize(HBONE_H2.connectionWindowSize);
				const conn: Conn = { key, session, streams: 0, idle: undefined, dead: false };
				const list = this.conns.get(key) ?? [];
				list.push(conn);
				this.conns.set(key, list);
				this.o.onConnection?.('open', key);
				const gone = (): void => this.drop(conn);
				session.on('error', gone);
				session.on('goaway', gone);
				session.on('close', gone);
				resolve(conn);
			});
		});
	}

	private release(conn: Conn): void {
		conn.streams = Math.max(0, conn.streams - 1);
		if (conn.streams > 0 || conn.dead) return;
		if (this.closed) return this.kill(conn);
		conn.idle = setTimeout(() => {
			if (conn.streams === 0) this.kill(conn);
		}, this.o.idleMs ?? 30_000);
		conn.idle.unref();
	}

	private kill(conn: Conn): void {
		this.drop(conn);
		if (!conn.session.destroyed) conn.session.close();
	}

	private drop(conn: Conn): void {
		if (conn.dead) return;
		conn.dead = true;
		if (conn.idle) clearTimeout(conn.idle);
		const list = this.conns.get(conn.key)?.filter((c) => c !== conn) ?? [];
		if (list.length) this.conns.set(conn.key, list);
		else this.conns.delete(conn.key);
		this.o.onConnection?.('close', conn.key);
	}
}

/** `node b (10.0.0.2:15008)`, or the address alone when the name is not known. */
function nodeName(node: TunnelRequest['node']): string {
	return node.name ? `node ${node.name} (${node.address}:${node.port})` : `node ${node.address}:${node.port}`;
}
