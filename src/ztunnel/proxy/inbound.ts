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
import { Http2SecureServer, ServerHttp2Session, ServerHttp2Stream, constants, createSecureServer, type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { WorkloadCertificate } from '../../identity/cert-manager.js';
import type { Workload, WorkloadLookup } from '../state.js';
import type { ConnectionInfo, ConnectionObserver } from './connections.js';
import { pump } from './connections.js';
import {
	FORWARDED,
	HBONE_SETTINGS,
	HBONE_TLS,
	HboneError,
	POLICY_HEADER,
	REASON_HEADER,
	forwardedFor,
	identityFromSni,
	parseAuthority,
	tlsPeerIdentity,
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
	readonly server: Http2SecureServer;
	private readonly contexts = new Map<string, { cert: WorkloadCertificate; ctx: SecureContext }>();
	private readonly sessions = new Set<ServerHttp2Session>();

	constructor(private readonly o: InboundOptions) {
		this.server = createSecureServer({
			...HBONE_TLS,
			allowHTTP1: false,
			requestCert: true,
			rejectUnauthorized: true,
			settings: HBONE_SETTINGS,
			SNICallback: (servername, cb) => {
				const ctx = this.context(servername);
				if (ctx) cb(null, ctx);
				else {
					this.o.log.warn({ component: 'inbound', sni: servername }, 'HBONE handshake for an identity this node holds no certificate of: refused');
					cb(new HboneError('WEIR_ERR_HBONE_NO_CERT', `no certificate for ${servername} on node ${this.o.node}`), undefined);
				}
			},
		});
		this.server.on('stream', (stream, headers) => void this.onStream(stream, headers));
		this.server.on('tlsClientError', (err, socket) => {
			this.o.log.info({ component: 'inbound', peer: socket.remoteAddress, err: err.message }, 'HBONE handshake failed');
		});
		this.server.on('sessionError', () => undefined);
		this.server.on('session', (session) => {
			this.sessions.add(session);
			session.once('close', () => this.sessions.delete(session));
		});
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

	/** Stops accepting and ends every HBONE connection (their streams with it). */
	close(): Promise<void> {
		const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
		for (const s of this.sessions) s.destroy();
		return closed;
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
		const tls = stream.session?.socket as TLSSocket | undefined;
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
