// The inbound side (Istio ztunnel's `proxy/inbound`): the HBONE server on :15008.
// Each TLS 1.3 connection presents the certificate of the destination identity the
// client names in its SNI and requires the client's; each CONNECT stream is then
// checked, in order, and answered with the first failure's status:
//   400  not a CONNECT to `ip:port`, or no `forwarded: for=<client ip>`
//   404  the address is not a meshed workload on this node
//   421  the address is a workload of another identity than the SNI named
//   401  the client pod's address does not belong to the authenticated identity, or
//        that pod does not run on the node the connection comes from
//   403  the authorization policy denies it (x-weir-policy names it)
//   503  the pod refused the connection or did not answer
// and, when all pass, delivered to the pod from the client pod's address (so the
// pod's NetworkPolicy and logs see the real client) and answered 200.
//
// Before any of that, the connection itself is checked (docs/ztunnel.md, "Bad input"):
// TLS 1.3, a client certificate of the trust bundle valid now, ALPN h2, the handshake
// done within handshakeTimeoutMs; each refusal is logged, counted by reason
// (InboundEvents) and the socket closed. A session with no open stream for
// idleTimeoutMs is closed, and one whose client resets (or has refused by the HTTP/2
// layer) more than resetBudget streams before they were answered is torn down with
// GOAWAY ENHANCE_YOUR_CALM: the rapid-reset pattern (CVE-2023-44487), against which
// Node's own limit reacts only after 1000 resets and leaves the connection open.
// drain() stops accepting, sends GOAWAY and lets open streams finish (src/ztunnel/drain.ts).
import { Http2Server, ServerHttp2Session, ServerHttp2Stream, constants, createServer as createH2Server, type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Server as TlsServer, createSecureContext, createServer as createTlsServer, type SecureContext, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { WorkloadCertificate } from '../../identity/cert-manager.js';
import type { Workload, WorkloadLookup } from '../state.js';
import type { ConnectionInfo, ConnectionObserver } from './connections.js';
import { pump } from './connections.js';
import {
	FORWARDED,
	HBONE_SERVER_H2,
	HBONE_SETTINGS,
	HBONE_TLS,
	HboneError,
	POLICY_HEADER,
	REASON_HEADER,
	forwardedFor,
	identityFromSni,
	parseAuthority,
	tlsPeerIdentity,
	uriSans,
} from './hbone.js';
import { formatSpiffeId } from '../../identity/spiffe.js';

/** The certificates this node serves, by SPIFFE ID (the certificate manager). */
export interface CertSource {
	get(identity: string): WorkloadCertificate | undefined;
}

export interface AuthzInput {
	source: { identity: string | undefined; ip: string; workload: Workload | undefined };
	destination: { workload: Workload; port: number };
}

export interface AuthzVerdict {
	allowed: boolean;
	reason: string;
	/** ns/name of the deciding policy */
	policy?: string;
}

export type Authorize = (input: AuthzInput) => AuthzVerdict;

/** Connects to a local pod with `source` as the source address (the transparent connect). */
export type Deliver = (source: string, destination: { address: string; port: number }) => Promise<Socket>;

export interface InboundOptions {
	node: string;
	trustDomain: string;
	state: () => WorkloadLookup;
	certs: CertSource;
	authorize: Authorize;
	deliver: Deliver;
	observer: ConnectionObserver;
	log: Logger;
	/** addresses a connection from this node itself may come from (the local path) */
	localAddresses?: () => string[];
	/** told about refused handshakes, reset streams and sessions the server ended (the metrics) */
	events?: InboundEvents;
	limits?: Partial<InboundLimits>;
}

export interface InboundLimits {
	/** the TLS handshake must be done in this time, or the socket is closed (Node's default is 120 s) */
	handshakeTimeoutMs: number;
	/** a session with no open stream for this long is closed (above the pool's 30 s, so a pooled connection is closed by its client first) */
	idleTimeoutMs: number;
	/** more than `streams` streams reset by the client before they were answered (or refused by the HTTP/2 layer) within `windowMs` end the session */
	resetBudget: { streams: number; windowMs: number };
}

export const DEFAULT_INBOUND_LIMITS: InboundLimits = {
	handshakeTimeoutMs: 10_000,
	idleTimeoutMs: 60_000,
	resetBudget: { streams: 100, windowMs: 10_000 },
};

/** Why a connection to :15008 was closed before HTTP/2 (the `reason` label of weir_ztunnel_rejected_handshakes_total). */
export type HandshakeRejection =
	| 'not_tls'
	| 'tls_version'
	| 'untrusted_certificate'
	| 'expired_certificate'
	| 'no_client_certificate'
	| 'unknown_identity'
	| 'not_h2'
	| 'handshake_timeout'
	| 'handshake_aborted'
	| 'draining'
	| 'tls_error';

/**
 * A stream that ended without an answer: reset by the client before the ztunnel
 * answered it, or refused by the HTTP/2 layer before the ztunnel saw it (over the
 * header or stream limit; counted from the stream IDs the next stream skips).
 */
export type StreamReset = 'client_reset' | 'http2_refused';

/** Why the server ended an HBONE session. */
export type SessionTermination = 'rapid_reset' | 'protocol_error' | 'idle_timeout' | 'drain_deadline';

export interface InboundEvents {
	handshakeRejected(reason: HandshakeRejection): void;
	streamReset(reason: StreamReset, streams: number): void;
	sessionTerminated(reason: SessionTermination): void;
}

const noEvents: InboundEvents = { handshakeRejected: () => undefined, streamReset: () => undefined, sessionTerminated: () => undefined };

/** The handshake rejection an error of the TLS layer stands for. */
export function handshakeReason(err: Error & { code?: string }): HandshakeRejection {
	const code = err.code ?? '';
	if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'handshake_timeout';
	if (code === 'WEIR_ERR_HBONE_NO_CERT') return 'unknown_identity';
	if (code === 'ECONNRESET' || code === 'EPIPE' || /socket disconnected|hang up/i.test(err.message)) return 'handshake_aborted';
	if (/UNSUPPORTED_PROTOCOL|VERSION_TOO_LOW|PROTOCOL_VERSION/.test(code)) return 'tls_version';
	if (/WRONG_VERSION_NUMBER|HTTP_REQUEST|HTTPS_PROXY_REQUEST|UNKNOWN_PROTOCOL|PACKET_LENGTH_TOO_LONG|RECORD_LENGTH_MISMATCH/.test(code)) return 'not_tls';
	if (/PEER_DID_NOT_RETURN_A_CERTIFICATE/.test(code)) return 'no_client_certificate';
	if (/NO_APPLICATION_PROTOCOL/.test(code)) return 'not_h2';
	return 'tls_error';
}

/** The rejection a failed verification of the client certificate stands for (Node's authorizationError codes). */
function certificateReason(socket: TLSSocket): HandshakeRejection {
	const code = String(socket.authorizationError ?? '');
	if (!socket.getPeerCertificate()?.raw) return 'no_client_certificate';
	if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return 'expired_certificate';
	return 'untrusted_certificate';
}

interface SessionMeta {
	peer: string;
	/** the client's SPIFFE ID (its certificate was verified before the session began) */
	identity: string | undefined;
	/** streams open now (the idle timer runs while there are none) */
	open: number;
	/** the highest stream ID the ztunnel saw (client streams are odd and ascending) */
	lastId: number;
	/** unanswered resets in the current budget window */
	resets: number;
	windowStart: number;
	idle: NodeJS.Timeout | undefined;
	/** set when the server ends the session itself */
	ending?: SessionTermination;
}

class Refusal extends Error {
	constructor(
		readonly status: number,
		message: string,
		/** the AuthorizationPolicy behind a 403, sent to the client as x-weir-policy */
		readonly policy?: string,
	) {
		super(message);
	}
}

export class InboundServer {
	/** the TLS listener; authenticated connections are handed to `h2` */
	readonly server: TlsServer;
	private readonly h2: Http2Server;
	private readonly limits: InboundLimits;
	private readonly events: InboundEvents;
	private readonly contexts = new Map<string, { cert: WorkloadCertificate; ctx: SecureContext }>();
	private readonly sockets = new Set<Socket>();
	/** each raw connection's peer, for a TLS socket that failed before it could say */
	private readonly peers = new WeakMap<Socket, string>();
	private readonly sessions = new Map<ServerHttp2Session, SessionMeta>();
	private readonly logWindows = new Map<string, { start: number; lines: number; suppressed: number }>();
	private draining = false;

	constructor(private readonly o: InboundOptions) {
		this.limits = { ...DEFAULT_INBOUND_LIMITS, ...o.limits };
		this.events = o.events ?? noEvents;
		// TLS is Node's, the checks of the client certificate are ours: with
		// rejectUnauthorized Node would close a bad certificate's socket without a word.
		this.server = createTlsServer({
			...HBONE_TLS,
			requestCert: true,
			rejectUnauthorized: false,
			handshakeTimeout: this.limits.handshakeTimeoutMs,
			SNICallback: (servername, cb) => {
				const ctx = this.context(servername);
				if (ctx) cb(null, ctx);
				else cb(new HboneError('WEIR_ERR_HBONE_NO_CERT', `no certificate for SNI ${servername} on node ${this.o.node}`), undefined);
			},
		});
		this.h2 = createH2Server({ settings: HBONE_SETTINGS, ...HBONE_SERVER_H2 });
		this.server.on('connection', (raw: Socket) => {
			this.peers.set(raw, peerOf(raw));
			this.sockets.add(raw);
			raw.once('close', () => this.sockets.delete(raw));
		});
		this.server.on('secureConnection', (tls: TLSSocket) => this.onTls(tls));
		this.server.on('tlsClientError', (err: Error & { code?: string; reason?: string }, tls: TLSSocket) =>
			this.rejectHandshake(handshakeReason(err), tls, err.reason ?? err.message, { code: err.code }),
		);
		this.h2.on('session', (session) => this.onSession(session));
		this.h2.on('stream', (stream, headers) => void this.onStream(stream, headers));
	}

	async listen(port: number, host = '0.0.0.0'): Promise<number> {
		await new Promise<void>((resolve, reject) => {
			this.server.once('error', reject);
			this.server.listen(port, host, () => {
				this.server.off('error', reject);
				resolve();
			});
		});
		return (this.server.address() as AddressInfo).port;
	}

	/** Open connections (TLS or not yet), HBONE sessions and streams, now. */
	stats(): { connections: number; sessions: number; streams: number } {
		let streams = 0;
		for (const m of this.sessions.values()) streams += m.open;
		return { connections: this.sockets.size, sessions: this.sessions.size, streams };
	}

	/** Stops accepting and ends every HBONE connection (their streams with it). */
	async close(): Promise<void> {
		this.beginDrain();
		this.forceClose();
		await this.idle();
	}

	// Drainable (src/ztunnel/drain.ts)
	readonly name = 'inbound';

	/** Stops accepting, and sends GOAWAY on every session: open streams go on, new ones are refused. */
	beginDrain(): void {
		if (this.draining) return;
		this.draining = true;
		if (this.server.listening) this.server.close();
		for (const s of this.sessions.keys()) if (!s.closed) s.close();
	}

	/** Resolves once no connection is left. */
	async idle(): Promise<void> {
		while (this.sockets.size > 0) await new Promise((r) => setTimeout(r, 20));
	}

	/** Ends whatever is still open (the drain's deadline); returns how many sessions that tore down. */
	forceClose(): number {
		const n = this.sessions.size;
		for (const s of [...this.sessions.keys()]) this.terminate(s, 'drain_deadline', constants.NGHTTP2_NO_ERROR, 'info');
		for (const raw of this.sockets) raw.destroy();
		return n;
	}

	/** An authenticated TLS connection becomes an HBONE session; anything else is refused here. */
	private onTls(tls: TLSSocket): void {
		if (this.draining) return this.rejectHandshake('draining', tls, `node ${this.o.node} is draining`);
		if (!tls.authorized) {
			const reason = certificateReason(tls);
			const claimed = uriSans(tls.getPeerCertificate()?.subjectaltname).join(', ') || undefined;
			return this.rejectHandshake(reason, tls, `the client certificate was not verified: ${String(tls.authorizationError ?? 'none presented')}`, {
				code: String(tls.authorizationError ?? ''),
				claimed,
			});
		}
		if (tls.alpnProtocol !== 'h2') return this.rejectHandshake('not_h2', tls, `ALPN ${String(tls.alpnProtocol)}: HBONE is HTTP/2 (h2)`);
		this.h2.emit('connection', tls);
	}

	private rejectHandshake(reason: HandshakeRejection, tls: TLSSocket, message: string, extra: Record<string, unknown> = {}): void {
		this.events.handshakeRejected(reason);
		const level = reason === 'untrusted_certificate' || reason === 'expired_certificate' || reason === 'unknown_identity' ? 'warn' : 'info';
		// (a socket the TLS layer destroyed has forgotten its peer; the raw connection under it has not)
		const raw = (tls as unknown as { _parent?: Socket })._parent;
		const peer = tls.remoteAddress ? peerOf(tls) : ((raw && this.peers.get(raw)) ?? peerOf(tls));
		this.logLimited(level, `handshake:${reason}`, { reason, peer, sni: tls.servername || undefined, err: message, ...extra }, 'HBONE connection refused');
		tls.destroy();
	}

	private onSession(session: ServerHttp2Session): void {
		const meta: SessionMeta = {
			peer: peerOf(session.socket),
			identity: peerIdentityOrUndefined(session.socket as TLSSocket, this.o.trustDomain),
			open: 0,
			lastId: -1,
			resets: 0,
			windowStart: Date.now(),
			idle: undefined,
		};
		this.sessions.set(session, meta);
		this.armIdle(session, meta);
		session.on('error', (err: Error & { code?: string }) => {
			if (meta.ending) return;
			// A peer that went away (ECONNRESET, …) is not bad input; an HTTP/2 violation is.
			if (!err.code?.startsWith('ERR_HTTP2')) {
				this.o.log.debug({ component: 'inbound', node: this.o.node, peer: meta.peer, err: err.message, code: err.code }, 'HBONE session lost');
				return;
			}
			meta.ending = 'protocol_error';
			this.events.sessionTerminated('protocol_error');
			this.logLimited(
				'info',
				'session:protocol_error',
				{ reason: 'protocol_error', peer: meta.peer, identity: meta.identity, err: err.message, code: err.code },
				'HBONE session ended: HTTP/2 error',
			);
		});
		session.once('close', () => {
			clearTimeout(meta.idle);
			this.sessions.delete(session);
		});
		if (this.draining) session.close();
	}

	private armIdle(session: ServerHttp2Session, meta: SessionMeta): void {
		clearTimeout(meta.idle);
		meta.idle = setTimeout(() => {
			if (meta.open === 0) this.terminate(session, 'idle_timeout', constants.NGHTTP2_NO_ERROR, 'debug');
		}, this.limits.idleTimeoutMs);
		meta.idle.unref();
	}

	/** Counts streams that ended unanswered; a session over its budget is torn down. */
	private unanswered(session: ServerHttp2Session, meta: SessionMeta, reason: StreamReset, streams: number): void {
		this.events.streamReset(reason, streams);
		const now = Date.now();
		if (now - meta.windowStart > this.limits.resetBudget.windowMs) {
			meta.windowStart = now;
			meta.resets = 0;
		}
		meta.resets += streams;
		if (meta.resets > this.limits.resetBudget.streams && !meta.ending) {
			this.terminate(session, 'rapid_reset', constants.NGHTTP2_ENHANCE_YOUR_CALM, 'warn', {
				resets: meta.resets,
				windowMs: this.limits.resetBudget.windowMs,
			});
		}
	}

	/** Ends a session from this side: a last GOAWAY with `code`, then the socket. */
	private terminate(
		session: ServerHttp2Session,
		reason: SessionTermination,
		code: number,
		level: 'debug' | 'info' | 'warn',
		extra: Record<string, unknown> = {},
	): void {
		const meta = this.sessions.get(session);
		if (!meta || meta.ending) return;
		meta.ending = reason;
		this.events.sessionTerminated(reason);
		this.logLimited(
			level,
			`session:${reason}`,
			{ reason, peer: meta.peer, identity: meta.identity, streams: meta.open, ...extra },
			'HBONE session ended by the server',
		);
		// (with an error: destroy(undefined, code) sends NO_ERROR, undefined taking the parameter's default; the error handler above ignores it)
		session.destroy(new HboneError(`WEIR_ERR_HBONE_${reason.toUpperCase()}`, `session ended by the server: ${reason}`), code);
	}

	/**
	 * A log line per refusal, but at most 20 a reason every 10 s: a flood of bad input
	 * must not become a flood of logs. The next line after a quiet spell says how many
	 * were left out; the counters count every one.
	 */
	private logLimited(level: 'debug' | 'info' | 'warn', key: string, fields: Record<string, unknown>, msg: string): void {
		const now = Date.now();
		let w = this.logWindows.get(key);
		if (!w || now - w.start > 10_000) {
			const suppressed = w?.suppressed ?? 0;
			w = { start: now, lines: 0, suppressed: 0 };
			this.logWindows.set(key, w);
			if (suppressed) fields = { ...fields, suppressed };
		}
		if (w.lines >= 20) {
			w.suppressed++;
			return;
		}
		w.lines++;
		this.o.log[level]({ component: 'inbound', node: this.o.node, ...fields }, msg);
	}

	/** The TLS context for the identity an SNI names, rebuilt when its certificate changed. */
	private context(sni: string): SecureContext | undefined {
		const id = identityFromSni(sni, this.o.trustDomain);
		if (!id) return undefined;
		const identity = formatSpiffeId(id);
		const cert = this.o.certs.get(identity);
		if (!cert) return undefined;
		const cached = this.contexts.get(identity);
		if (cached?.cert === cert) return cached.ctx;
		const ctx = createSecureContext({ cert: cert.certChain.join('\n'), key: cert.keyPem, ca: cert.trustBundle, ...HBONE_TLS });
		this.contexts.set(identity, { cert, ctx });
		return ctx;
	}

	private async onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
		stream.on('error', () => undefined);
		const session = stream.session as ServerHttp2Session | undefined;
		const meta = session && this.sessions.get(session);
		if (!session || !meta || stream.id === undefined) return void stream.close(constants.NGHTTP2_REFUSED_STREAM);
		// Client stream IDs ascend by two; the ones skipped were refused by the HTTP/2 layer.
		const skipped = meta.lastId < 0 ? (stream.id - 1) / 2 : (stream.id - meta.lastId) / 2 - 1;
		meta.lastId = stream.id;
		if (skipped > 0) this.unanswered(session, meta, 'http2_refused', skipped);
		if (meta.ending) return;
		// Reset in the same read as its HEADERS (the rapid-reset pattern): nothing to deliver.
		if (stream.destroyed) return this.unanswered(session, meta, 'client_reset', 1);
		meta.open++;
		clearTimeout(meta.idle);
		stream.once('close', () => {
			meta.open--;
			if (!stream.headersSent && !session.destroyed && !meta.ending) this.unanswered(session, meta, 'client_reset', 1);
			if (meta.open === 0 && !session.destroyed) this.armIdle(session, meta);
		});
		const tls = session.socket as TLSSocket | undefined;
		const remote = tls?.remoteAddress?.replace(/^::ffff:/, '') ?? '';
		const info: ConnectionInfo = {
			direction: 'inbound',
			source: { ip: '', port: 0 },
			destination: { ip: '', port: 0 },
			security: 'mutual_tls',
		};
		let upstream: Socket;
		try {
			const dst = this.check(headers, tls, remote, info);
			if (stream.destroyed) return;
			upstream = await this.o.deliver(info.source.ip, { address: dst.address, port: dst.port }).catch((err: Error & { code?: string }) => {
				throw new Refusal(503, `cannot reach ${dst.address}:${dst.port}: ${err.message}`);
			});
		} catch (err) {
			const r = err instanceof Refusal ? err : new Refusal(500, (err as Error).message);
			this.o.observer.refused(info, String(r.status), r.message);
			this.o.log.info(
				{
					component: 'inbound',
					status: r.status,
					peer: remote,
					source: info.source.identity,
					clientIp: info.source.ip,
					authority: headers[':authority'],
					reason: r.message,
					...(r.policy ? { policy: r.policy } : {}),
				},
				'HBONE stream refused',
			);
			if (!stream.destroyed && !stream.headersSent) {
				stream.respond(
					{
						':status': r.status,
						[REASON_HEADER]: r.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 512),
						...(r.policy ? { [POLICY_HEADER]: r.policy } : {}),
					},
					{ endStream: true },
				);
			}
			return;
		}
		if (stream.destroyed) {
			upstream.destroy();
			return;
		}
		stream.respond({ ':status': 200 });
		this.o.observer.opened(info);
		const result = await pump(stream, upstream);
		if (result.error && !stream.destroyed) stream.close(constants.NGHTTP2_CONNECT_ERROR);
		this.o.observer.closed(info, result);
	}

	/** Every check before delivery; fills `info` as it learns; throws Refusal. */
	private check(headers: IncomingHttpHeaders, tls: TLSSocket | undefined, remote: string, info: ConnectionInfo): { address: string; port: number } {
		if (headers[':method'] !== 'CONNECT') throw new Refusal(400, `method ${String(headers[':method'])}: HBONE takes CONNECT only`);
		const dst = parseAuthority(headers[':authority']);
		if (!dst) throw new Refusal(400, `:authority ${String(headers[':authority'])} is not <IPv4>:<port>`);
		info.destination = { ip: dst.address, port: dst.port };
		const clientIp = forwardedFor(headers[FORWARDED]);
		if (!clientIp) throw new Refusal(400, 'no "forwarded: for=<client pod address>" header');
		if (!tls) throw new Refusal(400, 'no TLS session');
		let peer: string;
		try {
			peer = tlsPeerIdentity(tls, this.o.trustDomain);
		} catch (err) {
			throw new Refusal(401, (err as Error).message);
		}
		const state = this.o.state();
		const source = state.byIp(clientIp);
		info.source = { ip: clientIp, port: 0, identity: peer, workload: source };
		const workload = state.byIp(dst.address);
		if (!workload || workload.node !== this.o.node || !workload.meshed) {
			throw new Refusal(404, `${dst.address} is not a meshed workload on node ${this.o.node}`);
		}
		info.destination.workload = workload;
		info.destination.identity = workload.identity;
		const sni = identityFromSni(tls.servername, this.o.trustDomain);
		if (!sni || formatSpiffeId(sni) !== workload.identity) {
			throw new Refusal(421, `${dst.address} is ${workload.identity}; the connection was opened for ${sni ? formatSpiffeId(sni) : 'no identity'}`);
		}
		if (!source || source.identity !== peer) {
			throw new Refusal(401, `client address ${clientIp} is ${source ? source.identity : 'no known workload'}, not the authenticated ${peer}`);
		}
		const sourceNode = state.nodeAddress(source.node);
		const local = source.node === this.o.node && (this.o.localAddresses?.() ?? []).includes(remote);
		if (sourceNode !== remote && !local) {
			throw new Refusal(
				401,
				`client ${source.namespace}/${source.name} runs on node ${source.node} (${sourceNode ?? 'no address'}), but the connection comes from ${remote}`,
			);
		}
		const verdict = this.o.authorize({ source: { identity: peer, ip: clientIp, workload: source }, destination: { workload, port: dst.port } });
		if (verdict.policy) info.policy = verdict.policy;
		if (!verdict.allowed) throw new Refusal(403, verdict.reason, verdict.policy);
		return dst;
	}
}

function peerOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined } | undefined): string {
	return `${socket?.remoteAddress?.replace(/^::ffff:/, '') ?? '?'}:${socket?.remotePort ?? '?'}`;
}

function peerIdentityOrUndefined(tls: TLSSocket, trustDomain: string): string | undefined {
	try {
		return tlsPeerIdentity(tls, trustDomain);
	} catch {
		return undefined;
	}
}
