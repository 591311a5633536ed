// In-process HBONE lab on loopback: a real CA root, one certificate manager per
// "node", inbound servers on 127.0.0.11 / 127.0.0.12, pods as TCP servers on 127.0.1.x,
// and captured connections handed to the outbound proxy as the datapath would (the
// client socket bound to the pod's address). Only the capture (a kernel matter,
// test/kernel/ztunnel-capture.test.ts) and the transparent connect are replaced:
// loopback addresses can be bound without IP_TRANSPARENT.
import type { ClientHttp2Stream } from 'node:http2';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type * as k8s from '@kubernetes/client-node';
import pino, { type Logger } from 'pino';
import { checkCsr } from '../../src/ca/csr.js';
import { createRoot, issueWorkloadCert, type CaRoot } from '../../src/ca/issue.js';
import type { CaClient, SignedCertificate } from '../../src/identity/ca-client.js';
import { CertificateManager, type WorkloadCertificate } from '../../src/identity/cert-manager.js';
import { createCsr, generateKeyPair } from '../../src/identity/csr.js';
import { privateKeyPem } from '../../src/identity/x509.js';
import { parseSpiffeId } from '../../src/identity/spiffe.js';
import { buildState, type StateSnapshot } from '../../src/ztunnel/state.js';
import { InboundServer, type Authorize, type InboundLimits } from '../../src/ztunnel/proxy/inbound.js';
import { OutboundProxy } from '../../src/ztunnel/proxy/outbound.js';
import { HbonePool } from '../../src/ztunnel/proxy/pool.js';
import { fanOut, type ConnectionInfo, type ConnectionObserver, type ConnectionResult } from '../../src/ztunnel/proxy/connections.js';
import { ZtunnelMetrics } from '../../src/ztunnel/metrics.js';

export const TD = 'cluster.local';

/** Signs with a real root, in process (the CA's own CSR check and certificate profile). */
export class LocalCa implements CaClient {
	signed = 0;
	constructor(readonly root: CaRoot) {}
	static async create(): Promise<LocalCa> {
		return new LocalCa(await createRoot(TD, Date.now()));
	}
	/** A certificate of `identity` issued as if the clock read `now` (in the past: an expired one). */
	async issueAt(identity: string, now: number, ttlMs = 3600_000): Promise<WorkloadCertificate> {
		const keys = await generateKeyPair();
		const { publicKey } = await checkCsr(await createCsr(keys, parseSpiffeId(identity)), identity);
		const c = await issueWorkloadCert(this.root, publicKey, identity, ttlMs, now);
		return {
			identity,
			certChain: [c.pem],
			keyPem: await privateKeyPem(keys.privateKey),
			trustBundle: [this.root.certPem],
			notBefore: c.cert.notBefore.getTime(),
			notAfter: c.cert.notAfter.getTime(),
		};
	}
	async sign(csrPem: string, identity: string): Promise<SignedCertificate> {
		const { publicKey } = await checkCsr(csrPem, identity);
		const c = await issueWorkloadCert(this.root, publicKey, identity, 3600_000, Date.now());
		this.signed++;
		return { certChain: [c.pem], trustBundle: [this.root.certPem], notBefore: c.cert.notBefore, notAfter: c.cert.notAfter };
	}
}

export interface LabPod {
	ns: string;
	name: string;
	sa: string;
	node: 'a' | 'b';
	ip: string;
	meshed?: boolean;
}

export const NODE_IP = { a: '127.0.0.11', b: '127.0.0.12' } as const;

export function podObject(p: LabPod): k8s.V1Pod {
	return {
		metadata: { namespace: p.ns, name: p.name, uid: `uid-${p.name}`, labels: { app: p.name } },
		spec: { nodeName: p.node, serviceAccountName: p.sa, containers: [] },
		status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }] },
	};
}

export function labState(pods: LabPod[]): StateSnapshot {
	const meshed = new Set(pods.filter((p) => p.meshed !== false).map((p) => p.ip));
	return buildState(
		{
			pods: pods.map(podObject),
			namespaces: [...new Set(pods.map((p) => p.ns))].map((n) => ({ metadata: { name: n } })),
			nodes: (['a', 'b'] as const).map((n) => ({ metadata: { name: n }, status: { addresses: [{ type: 'InternalIP', address: NODE_IP[n] }] } })),
		},
		TD,
		(pod) => meshed.has(pod.status?.podIP ?? ''),
	);
}

export class RecordingObserver implements ConnectionObserver {
	readonly events: { kind: 'opened' | 'closed' | 'refused'; c: ConnectionInfo; r?: ConnectionResult; code?: string; reason?: string }[] = [];
	constructor(private readonly next?: ConnectionObserver) {}
	opened(c: ConnectionInfo): void {
		this.events.push({ kind: 'opened', c });
		this.next?.opened(c);
	}
	closed(c: ConnectionInfo, r: ConnectionResult): void {
		this.events.push({ kind: 'closed', c, r });
		this.next?.closed(c, r);
	}
	refused(c: ConnectionInfo, code: string, reason: string): void {
		this.events.push({ kind: 'refused', c, code, reason });
		this.next?.refused(c, code, reason);
	}
}

export interface LabNode {
	name: 'a' | 'b';
	certs: CertificateManager;
	inbound: InboundServer;
	outbound: OutboundProxy;
	pool: HbonePool;
	metrics: ZtunnelMetrics;
	observer: RecordingObserver;
	/** a captured connection from `from` (a pod of this node) to `to`; the app's end of it */
	capture(from: string, to: { address: string; port: number }): Promise<Socket>;
}

export const log = pino({ level: process.env.WEIR_TEST_LOG ?? 'silent' });

/** A logger whose JSON lines the test reads (pino writing to an in-memory destination). */
export function captureLog(): { log: Logger; lines: Record<string, unknown>[] } {
	const lines: Record<string, unknown>[] = [];
	const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
	return { log: logger, lines };
}

export interface LabOptions {
	ca?: LocalCa;
	/** the inbound servers' logger (default: silent unless WEIR_TEST_LOG) */
	log?: Logger;
	limits?: Partial<InboundLimits>;
	/** one more ConnectionObserver per node, told after its metrics (e.g. a flow reporter) */
	observer?: (node: 'a' | 'b') => ConnectionObserver;
}

export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
	const end = Date.now() + timeoutMs;
	while (!cond()) {
		if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 10));
	}
}

export class HboneLab {
	readonly nodes: Record<'a' | 'b', LabNode>;
	private readonly servers: Server[] = [];
	authorize: Authorize = () => ({ allowed: true, reason: 'allowed: no policy applies' });

	private constructor(
		readonly ca: LocalCa,
		public state: StateSnapshot,
		nodes: Record<'a' | 'b', LabNode>,
		readonly port: number,
	) {
		this.nodes = nodes;
	}

	static async start(pods: LabPod[], o: LabOptions = {}): Promise<HboneLab> {
		const theCa = o.ca ?? (await LocalCa.create());
		const holder: { lab?: HboneLab } = {};
		const state = (): StateSnapshot => holder.lab!.state;
		const make = (name: 'a' | 'b'): LabNode => {
			const certs = new CertificateManager({ ca: theCa, log });
			const metrics = new ZtunnelMetrics({ defaultMetrics: false });
			const extra = o.observer?.(name);
			const observer = new RecordingObserver(extra ? fanOut(metrics, extra) : metrics);
			const pool = new HbonePool({
				trustDomain: TD,
				localAddress: NODE_IP[name],
				onConnection: (e) => (e === 'open' ? metrics.hboneConnections.inc() : metrics.hboneConnections.dec()),
			});
			const inbound = new InboundServer({
				node: name,
				trustDomain: TD,
				state,
				certs,
				authorize: (i) => holder.lab!.authorize(i),
				deliver: (source, dst) => plainDeliver(source, dst),
				observer,
				events: metrics,
				log: o.log ?? log,
				localAddresses: () => [NODE_IP[name]],
				...(o.limits ? { limits: o.limits } : {}),
			});
			const node: LabNode = {
				name,
				certs,
				inbound,
				pool,
				metrics,
				observer,
				outbound: undefined as unknown as OutboundProxy,
				capture: undefined as unknown as LabNode['capture'],
			};
			return node;
		};
		const nodes = { a: make('a'), b: make('b') };
		const portB = await nodes.b.inbound.listen(0, NODE_IP.b);
		await nodes.a.inbound.listen(portB, NODE_IP.a);
		const lab = new HboneLab(theCa, labState(pods), nodes, portB);
		holder.lab = lab;
		for (const n of [nodes.a, nodes.b]) {
			n.outbound = new OutboundProxy({
				node: n.name,
				state,
				certs: n.certs,
				pool: n.pool,
				observer: n.observer,
				log,
				hbonePort: portB,
				connectTimeoutMs: 3000,
			});
			n.capture = (from, to) => lab.captured(n, from, to);
			n.certs.setIdentities(lab.state.onNode(n.name).map((w) => parseSpiffeId(w.identity)));
		}
		await waitFor(() => [nodes.a, nodes.b].every((n) => n.certs.identities().every((id) => n.certs.get(id))), 'workload certificates');
		return lab;
	}

	/** One CONNECT from node a to node b's HBONE server as `cert`, through a pool of its own that closes with the stream. */
	async tunnel(o: { cert: WorkloadCertificate; destinationIdentity: string; authority: string; clientIp: string }): Promise<ClientHttp2Stream> {
		const pool = new HbonePool({ trustDomain: TD, localAddress: NODE_IP.a });
		try {
			const s = await pool.open({ ...o, node: { address: NODE_IP.b, port: this.port, name: 'b' }, timeoutMs: 3000 });
			s.once('close', () => pool.close());
			return s;
		} catch (err) {
			pool.close();
			throw err;
		}
	}

	/** A pod's server: answers "peer <ip>\n" with the address it sees, then echoes. */
	async podServer(ip: string): Promise<number> {
		const s = createServer((c) => {
			c.on('error', () => undefined);
			c.write(`peer ${c.remoteAddress}\n`);
			c.pipe(c);
		});
		this.servers.push(s);
		await new Promise<void>((r) => s.listen(0, ip, r));
		return (s.address() as AddressInfo).port;
	}

	private async captured(n: LabNode, from: string, to: { address: string; port: number }): Promise<Socket> {
		const listener = createServer({ allowHalfOpen: true });
		this.servers.push(listener);
		await new Promise<void>((r) => listener.listen(0, NODE_IP[n.name], r));
		const accepted = new Promise<Socket>((r) => listener.once('connection', r));
		const app = connect({ host: NODE_IP[n.name], port: (listener.address() as AddressInfo).port, localAddress: from });
		app.on('error', () => undefined);
		const sock = await accepted;
		listener.close();
		sock.on('error', () => undefined);
		void n.outbound.handle({ socket: sock, source: { address: sock.remoteAddress!, port: sock.remotePort! }, originalDestination: to });
		return app;
	}

	async stop(): Promise<void> {
		for (const n of Object.values(this.nodes)) {
			n.pool.close();
			n.certs.stop();
			await n.inbound.close();
		}
		for (const s of this.servers) s.close();
	}
}

/** Delivery from a loopback source address (stands in for the transparent connect). */
export function plainDeliver(source: string, dst: { address: string; port: number }): Promise<Socket> {
	return new Promise((resolve, reject) => {
		const s = connect({ host: dst.address, port: dst.port, localAddress: source, allowHalfOpen: true });
		s.once('connect', () => {
			s.off('error', reject);
			resolve(s);
		});
		s.once('error', reject);
	});
}

/** Reads from `s` until `n` bytes or its end. */
export function readAll(s: Socket, until?: (buf: string) => boolean, timeoutMs = 5000): Promise<{ data: string; ended: boolean; error?: string }> {
	return new Promise((resolve) => {
		let data = '';
		const timer = setTimeout(() => resolve({ data, ended: false, error: 'timeout' }), timeoutMs);
		const done = (ended: boolean, error?: string): void => {
			clearTimeout(timer);
			resolve({ data, ended, ...(error ? { error } : {}) });
		};
		s.on('data', (d: Buffer) => {
			data += d.toString();
			if (until?.(data)) done(false);
		});
		s.once('end', () => done(true));
		s.once('error', (e: Error & { code?: string }) => done(true, e.code ?? e.message));
		s.once('close', () => done(true));
	});
}
