// The outbound side (Istio ztunnel's `proxy/outbound`): a connection the datapath
// captured from a meshed pod of this node, to a meshed pod, is tunnelled over HBONE to
// the destination's node as the source pod's identity. The datapath captures only
// connections to meshed pods (docs/ztunnel.md); one whose destination is no longer a
// meshed workload by the time it arrives (a label changed in between) is closed, not
// sent around the mesh.
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { CapturedConnection } from '../capture.js';
import { PORTS } from '../config.js';
import type { WorkloadLookup } from '../state.js';
import type { ConnectionInfo, ConnectionObserver } from './connections.js';
import { pump } from './connections.js';
import type { CertSource } from './inbound.js';
import type { HbonePool } from './pool.js';

export interface OutboundOptions {
	node: string;
	state: () => WorkloadLookup;
	certs: CertSource;
	pool: Pick<HbonePool, 'open'>;
	observer: ConnectionObserver;
	log: Logger;
	/** the HBONE port of every node (default 15008) */
	hbonePort?: number;
	connectTimeoutMs?: number;
}

export class OutboundProxy {
	constructor(private readonly o: OutboundOptions) {}

	/** Handles one captured connection until it closes. */
	async handle(c: CapturedConnection): Promise<void> {
		const { socket } = c;
		socket.pause();
		const state = this.o.state();
		const src = state.byIp(c.source.address);
		const dst = state.byIp(c.originalDestination.address);
		const info: ConnectionInfo = {
			direction: 'outbound',
			source: { ip: c.source.address, port: c.source.port, workload: src, identity: src?.identity },
			destination: { ip: c.originalDestination.address, port: c.originalDestination.port, workload: dst, identity: dst?.identity },
			security: 'mutual_tls',
		};
		const refuse = (code: string, reason: string): void => {
			this.o.observer.refused(info, code, reason);
			this.o.log.info(
				{
					component: 'outbound',
					code,
					src: `${c.source.address}:${c.source.port}`,
					dst: `${c.originalDestination.address}:${c.originalDestination.port}`,
					reason,
				},
				'captured connection closed',
			);
			socket.resetAndDestroy();
		};
		if (!src || src.node !== this.o.node || !src.meshed) {
			return refuse('WEIR_ERR_OUTBOUND_SOURCE', `${c.source.address} is not a meshed workload of node ${this.o.node}`);
		}
		if (!dst || !dst.meshed) return refuse('WEIR_ERR_OUTBOUND_DESTINATION', `${c.originalDestination.address} is not a meshed workload (any more)`);
		const nodeAddress = state.nodeAddress(dst.node);
		if (!nodeAddress) return refuse('WEIR_ERR_OUTBOUND_NODE', `node ${dst.node} of ${dst.namespace}/${dst.name} has no InternalIP`);
		info.node = nodeAddress;
		const cert = this.o.certs.get(src.identity);
		if (!cert) return refuse('WEIR_ERR_OUTBOUND_NO_CERT', `no certificate for ${src.identity} yet (is weir-controller's CA reachable?)`);
		let tunnel;
		try {
			tunnel = await this.o.pool.open({
				cert,
				destinationIdentity: dst.identity,
				node: { address: nodeAddress, port: this.o.hbonePort ?? PORTS.hbone, name: dst.node },
				authority: `${c.originalDestination.address}:${c.originalDestination.port}`,
				clientIp: c.source.address,
				...(this.o.connectTimeoutMs ? { timeoutMs: this.o.connectTimeoutMs } : {}),
			});
		} catch (err) {
			const e = err as { code?: string; status?: number; policy?: string };
			if (e.status !== undefined) info.hboneStatus = e.status;
			if (e.policy) info.policy = e.policy;
			return refuse(e.code ?? 'WEIR_ERR_HBONE', (err as Error).message);
		}
		if (socket.destroyed) {
			tunnel.close();
			return;
		}
		this.o.observer.opened(info);
		socket.resume();
		const result = await pump(socket as Socket, tunnel);
		this.o.observer.closed(info, result);
	}
}
