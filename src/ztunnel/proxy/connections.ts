// One proxied connection as the rest of the ztunnel sees it (metrics, flows, logs),
// and the byte pump between its two halves: half-close passes through (an end on one
// side ends the other's write side), an error or reset on either side tears both
// down, and the pump reports the bytes each way once, when both sides are done.
import type { Duplex } from 'node:stream';
import type { Workload } from '../state.js';

export type Direction = 'outbound' | 'inbound';

export interface Peer {
	ip: string;
	port: number;
	workload?: Workload | undefined;
	/** SPIFFE ID, when authenticated */
	identity?: string | undefined;
}

export interface ConnectionInfo {
	/** outbound: reported by the client's ztunnel; inbound: by the destination's */
	direction: Direction;
	source: Peer;
	destination: Peer;
	/** mutual_tls for HBONE, none for plaintext */
	security: 'mutual_tls' | 'none';
	/** the destination node's address (outbound) */
	node?: string;
	/**
	 * 'namespace/name' of the AuthorizationPolicy that decided: set by the inbound side
	 * once it authorized (allowed or denied), and by the outbound side from a refusal
	 * that names it
	 */
	policy?: string;
	/** (outbound, refused) the HTTP status the destination's ztunnel answered the CONNECT with */
	hboneStatus?: number;
}

export interface ConnectionResult {
	/** bytes from the source to the destination */
	sent: number;
	/** bytes from the destination back to the source */
	received: number;
	durationMs: number;
	/** set when the connection ended by an error rather than both sides closing */
	error?: string;
}

/** Told about every connection the proxy handles. Must not throw or block. */
export interface ConnectionObserver {
	opened(c: ConnectionInfo): void;
	closed(c: ConnectionInfo, r: ConnectionResult): void;
	/** a connection the proxy refused or could not establish; `code` is a WEIR_ERR_* or an HTTP status */
	refused(c: ConnectionInfo, code: string, reason: string): void;
}

export const nullObserver: ConnectionObserver = { opened: () => undefined, closed: () => undefined, refused: () => undefined };

/**
 * One observer telling several (metrics, flow records): each is called in turn, and
 * one that throws despite its contract neither reaches the proxy nor keeps the others
 * from hearing of the connection.
 */
export function fanOut(...observers: ConnectionObserver[]): ConnectionObserver {
	const each = (call: (o: ConnectionObserver) => void): void => {
		for (const o of observers) {
			try {
				call(o);
			} catch {
				// an observer's bug must not break the data path
			}
		}
	};
	return {
		opened: (c) => each((o) => o.opened(c)),
		closed: (c, r) => each((o) => o.closed(c, r)),
		refused: (c, code, reason) => each((o) => o.refused(c, code, reason)),
	};
}

/**
 * Pumps bytes both ways between `source` (the side the connection came from) and
 * `destination`; resolves when both are closed.
 */
export function pump(source: Duplex, destination: Duplex): Promise<ConnectionResult> {
	const started = Date.now();
	let sent = 0;
	let received = 0;
	let error: string | undefined;
	source.on('data', (d: Buffer) => (sent += d.length));
	destination.on('data', (d: Buffer) => (received += d.length));
	source.pipe(destination);
	destination.pipe(source);
	return new Promise((resolve) => {
		let open = 2;
		const done = (): void => {
			if (--open === 0) resolve({ sent, received, durationMs: Date.now() - started, ...(error ? { error } : {}) });
		};
		const onError =
			(side: string) =>
			(err: Error): void => {
				error ??= `${side}: ${err.message}`;
				source.destroy();
				destination.destroy();
			};
		source.on('error', onError('source'));
		destination.on('error', onError('destination'));
		source.once('close', () => {
			// A source that is gone entirely (not merely half-closed) takes the other side with it.
			if (!destination.destroyed && !source.readableEnded) destination.destroy();
			done();
		});
		destination.once('close', () => {
			if (!source.destroyed && !destination.readableEnded) source.destroy();
			done();
		});
	});
}
