// The ztunnel's capture edge: the outbound listener the pod programs assign a meshed
// pod's connections to, and the transparent connect the inbound side delivers with
// (the client pod's IP as source). Only sockets here; what to do with a connection
// (HBONE, policy) belongs to the proxy that uses this.
import { Server, Socket, createServer } from 'node:net';
import { transparentConnectFd, transparentListenerFd } from '../kernel/capture.js';
import { PORTS, ZTUNNEL_MARK } from './config.js';

export interface Address {
	address: string;
	port: number;
}

/** A connection captured from a pod: the pod's socket address and where it was going. */
export interface CapturedConnection {
	socket: Socket;
	/** the pod that opened it */
	source: Address;
	/** the address the pod connected to (a pod IP or a ClusterIP), as the pod sees it */
	originalDestination: Address;
}

export interface CaptureListenerOptions {
	/** default 15001 */
	port?: number;
	/** default '0.0.0.0' (what the pod programs look up; DatapathConfig.proxyAddress) */
	address?: string;
	/** SO_MARK of the listener, inherited by the accepted sockets (default ZTUNNEL_MARK) */
	mark?: number;
	/** namespace path of the node (default: this process's) */
	netns?: string;
}

export class CaptureError extends Error {
	constructor(
		readonly code: string,
		message: string,
		options?: { cause?: unknown },
	) {
		super(message, options);
		this.name = 'CaptureError';
	}
}

/** The outbound capture listener (Istio's 15001), on an IP_TRANSPARENT socket. */
export class CaptureListener {
	private constructor(
		readonly server: Server,
		readonly port: number,
	) {}

	/**
	 * Opens the listener and resolves once Node listens on it. A connection that reached
	 * the listener's own port directly (not captured: it would proxy to itself) is closed.
	 */
	static async open(onConnection: (c: CapturedConnection) => void, opts: CaptureListenerOptions = {}): Promise<CaptureListener> {
		const port = opts.port ?? PORTS.outbound;
		let fd: number;
		try {
			fd = transparentListenerFd({ address: opts.address ?? '0.0.0.0', port, mark: opts.mark ?? ZTUNNEL_MARK, ...(opts.netns ? { netns: opts.netns } : {}) });
		} catch (cause) {
			throw new CaptureError(
				'WEIR_ERR_CAPTURE_LISTEN',
				`cannot open the capture listener on port ${port}: ${(cause as Error).message}; the ztunnel needs CAP_NET_ADMIN and the port free in the node's namespace`,
				{ cause },
			);
		}
		// Half-open: an application that ends its writing side still gets the answer.
		const server = createServer({ allowHalfOpen: true }, (socket) => {
			socket.on('error', () => undefined);
			const c = describe(socket);
			if (!c || c.originalDestination.port === port) {
				socket.destroy();
				return;
			}
			onConnection(c);
		});
		await new Promise<void>((resolve, reject) => {
			server.once('error', reject);
			server.listen({ fd }, () => {
				server.off('error', reject);
				resolve();
			});
		});
		return new CaptureListener(server, port);
	}

	/** Stops accepting; connections already accepted stay open. */
	close(): Promise<void> {
		return new Promise((resolve) => this.server.close(() => resolve()));
	}
}

/** The accepted socket's addresses: its local address is the pod's original destination. */
export function describe(socket: Socket): CapturedConnection | undefined {
	const { localAddress, localPort, remoteAddress, remotePort } = socket;
	if (!localAddress || !localPort || !remoteAddress || !remotePort) return undefined;
	return { socket, source: { address: remoteAddress, port: remotePort }, originalDestination: { address: localAddress, port: localPort } };
}

export interface DeliverOptions {
	/** the address the destination should see as its peer (the client pod's IP), or '0.0.0.0' for the node's own */
	source: string;
	sourcePort?: number;
	destination: Address;
	mark?: number;
	timeoutMs?: number;
}

/**
 * Connects to a destination with the ztunnel's mark, from `source` (a foreign address:
 * the inbound side delivers with the client pod's IP). Resolves with a connected socket.
 */
export async function connectTransparent(opts: DeliverOptions): Promise<Socket> {
	const fd = await transparentConnectFd({
		source: opts.source,
		sourcePort: opts.sourcePort ?? 0,
		address: opts.destination.address,
		port: opts.destination.port,
		mark: opts.mark ?? ZTUNNEL_MARK,
		...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
	});
	return new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
}
