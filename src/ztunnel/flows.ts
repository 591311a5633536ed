// The ztunnel's flows: a ConnectionObserver that turns every event of a proxied
// connection (opened, closed, refused) into one record (src/shared/mesh-flow-record.ts)
// and sends it, as an NDJSON line, to the node agent's unix socket; the agent adds it
// to the node's flows, so the relay, `weir observe` and the UI see it.
//
// Off the data path by construction: an event costs building one small object and a
// JSON.stringify into a bounded queue; writing happens later, in batches, on the event
// loop. Nothing here waits for the agent. While the agent is away (restarting, not
// started yet) the queue holds the newest records (the oldest are dropped and counted
// in weir_ztunnel_flow_records_dropped_total) and the socket is retried with jittered
// backoff; the queue is delivered when it is back. Never throws.
import { createConnection, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { MESH_FLOW_RECORD_VERSION, type MeshDropReason, type MeshFlowRecord, type MeshFlowRecordEnd } from '../shared/mesh-flow-record.js';
import type { ConnectionInfo, ConnectionObserver, ConnectionResult, Peer } from './proxy/connections.js';

export interface FlowReporterOptions {
	/** the agent's socket (DEFAULTS.ztunnelFlowSocket) */
	socketPath: string;
	/** this node's name */
	node: string;
	log: Logger;
	/** where the reporter's own metrics go (the ztunnel's registry) */
	registry?: Registry;
	/** records held while the agent does not take them (default 4 096; the oldest are dropped past it) */
	maxQueue?: number;
	/** reconnect backoff: first delay and cap (ms; default 100 and 5 000), jittered */
	backoffMs?: { initial: number; max: number };
	/** lines per write (default 256) */
	batch?: number;
	now?: () => number;
}

/** Which of the stable drop reasons a refusal is, from the code the proxy gave it. */
export function meshDropReason(c: ConnectionInfo, code: string): MeshDropReason {
	const status = c.direction === 'inbound' ? Number(code) : c.hboneStatus;
	if (status === 403) return 'AUTHZ_DENIED';
	if (status === 401 || status === 421) return 'MTLS_FAILED';
	if (status === 503) return 'DESTINATION_UNAVAILABLE';
	if (status !== undefined && Number.isInteger(status)) return 'HBONE_REFUSED';
	// Outbound failures before any answer: the handshake (a certificate, an identity) or the transport.
	if (['WEIR_ERR_HBONE_CONNECT', 'WEIR_ERR_HBONE_PEER_IDENTITY', 'WEIR_ERR_OUTBOUND_NO_CERT'].includes(code)) return 'MTLS_FAILED';
	return 'HBONE_REFUSED';
}

function end(p: Peer): MeshFlowRecordEnd {
	const e: MeshFlowRecordEnd = { ip: p.ip, port: p.port };
	if (p.identity) e.identity = p.identity;
	if (p.workload) {
		e.namespace = p.workload.namespace;
		e.pod = p.workload.name;
		e.workload = p.workload.workload;
	}
	return e;
}

/** The record of one event (pure). */
export function meshFlowRecord(
	node: string,
	time: number,
	c: ConnectionInfo,
	event: MeshFlowRecord['event'],
	extra: { result?: ConnectionResult; code?: string; reason?: string } = {},
): MeshFlowRecord {
	const r: MeshFlowRecord = {
		v: MESH_FLOW_RECORD_VERSION,
		time: new Date(time).toISOString(),
		node,
		event,
		reporter: c.direction === 'outbound' ? 'source' : 'destination',
		security: c.security,
		source: end(c.source),
		destination: end(c.destination),
	};
	if (c.policy) r.authorizationPolicy = c.policy;
	if (extra.result) {
		r.bytesSent = extra.result.sent;
		r.bytesReceived = extra.result.received;
		r.durationMs = Math.max(0, Math.round(extra.result.durationMs));
		if (extra.result.error) r.reason = extra.result.error.slice(0, 2048);
	}
	if (event === 'refused' && extra.code !== undefined) {
		r.dropReason = meshDropReason(c, extra.code);
		r.code = extra.code.slice(0, 64) || 'unknown';
		if (extra.reason) r.reason = extra.reason.slice(0, 2048);
	}
	return r;
}

/** A FIFO of lines with a fixed bound: pushing onto a full one drops the oldest. */
class BoundedQueue {
	private items: string[] = [];
	private head = 0;

	constructor(readonly capacity: number) {}

	get length(): number {
		return this.items.length - this.head;
	}

	/** Adds a line; returns how many old lines it pushed out (0 or 1). */
	push(line: string): number {
		this.items.push(line);
		if (this.length <= this.capacity) return 0;
		this.head++;
		this.compact();
		return 1;
	}

	/** Takes up to `n` lines off the front. */
	take(n: number): string[] {
		const out = this.items.slice(this.head, this.head + n);
		this.head += out.length;
		this.compact();
		return out;
	}

	private compact(): void {
		if (this.head > 1024 && this.head * 2 > this.items.length) {
			this.items = this.items.slice(this.head);
			this.head = 0;
		}
	}
}

export class FlowReporter implements ConnectionObserver {
	private readonly queue: BoundedQueue;
	private socket: Socket | undefined;
	private connected = false;
	/** waiting for the socket to take what it has (write returned false) */
	private blocked = false;
	private flushing: NodeJS.Immediate | undefined;
	private retry: NodeJS.Timeout | undefined;
	private delay: number;
	private stopped = false;
	/** whether the agent's absence was logged (once per outage, not per retry) */
	private reportedDown = false;
	private readonly dropped: Counter;
	private readonly sent: Counter;
	private readonly up: Gauge;
	private readonly now: () => number;
	/** counts for tests and /status */
	readonly stats = { records: 0, sent: 0, dropped: 0, connects: 0 };

	constructor(private readonly o: FlowReporterOptions) {
		const max = o.maxQueue ?? 4096;
		if (!Number.isInteger(max) || max < 1) throw new RangeError('maxQueue must be a positive integer');
		this.queue = new BoundedQueue(max);
		this.delay = o.backoffMs?.initial ?? 100;
		this.now = o.now ?? Date.now;
		const registers = o.registry ? [o.registry] : [];
		this.dropped = new Counter({
			name: 'weir_ztunnel_flow_records_dropped_total',
			help: "connection records dropped because the node agent's flow socket did not take them in time (the queue was full)",
			registers,
		});
		this.sent = new Counter({ name: 'weir_ztunnel_flow_records_sent_total', help: "connection records written to the node agent's flow socket", registers });
		this.up = new Gauge({ name: 'weir_ztunnel_flow_socket_connected', help: "1 while the node agent's flow socket is connected", registers });
	}

	/** Connects to the agent's socket (and keeps reconnecting until close()). */
	start(): void {
		this.connect();
	}

	opened(c: ConnectionInfo): void {
		this.record(() => meshFlowRecord(this.o.node, this.now(), c, 'open'));
	}

	closed(c: ConnectionInfo, r: ConnectionResult): void {
		this.record(() => meshFlowRecord(this.o.node, this.now(), c, 'close', { result: r }));
	}

	refused(c: ConnectionInfo, code: string, reason: string): void {
		this.record(() => meshFlowRecord(this.o.node, this.now(), c, 'refused', { code, reason }));
	}

	/** Records waiting to be written. */
	get queued(): number {
		return this.queue.length;
	}

	get isConnected(): boolean {
		return this.connected;
	}

	close(): void {
		this.stopped = true;
		clearTimeout(this.retry);
		clearImmediate(this.flushing);
		this.socket?.destroy();
		this.socket = undefined;
		this.connected = false;
		this.up.set(0);
	}

	private record(build: () => MeshFlowRecord): void {
		try {
			if (this.stopped) return;
			const lost = this.queue.push(JSON.stringify(build()));
			this.stats.records++;
			if (lost) {
				this.dropped.inc(lost);
				this.stats.dropped += lost;
			}
			this.scheduleFlush();
		} catch {
			// never into the proxy
		}
	}

	private scheduleFlush(): void {
		if (!this.connected || this.blocked || this.flushing) return;
		this.flushing = setImmediate(() => {
			this.flushing = undefined;
			this.flush();
		});
	}

	private flush(): void {
		const s = this.socket;
		while (s && this.connected && !this.blocked && this.queue.length) {
			const lines = this.queue.take(this.o.batch ?? 256);
			this.sent.inc(lines.length);
			this.stats.sent += lines.length;
			if (!s.write(`${lines.join('\n')}\n`)) {
				this.blocked = true;
				s.once('drain', () => {
					this.blocked = false;
					this.scheduleFlush();
				});
			}
		}
	}

	private connect(): void {
		if (this.stopped) return;
		const s = createConnection(this.o.socketPath);
		this.socket = s;
		s.on('connect', () => {
			this.connected = true;
			this.blocked = false;
			this.delay = this.o.backoffMs?.initial ?? 100;
			this.stats.connects++;
			this.up.set(1);
			this.o.log.info(
				{ component: 'flows', socket: this.o.socketPath, queued: this.queue.length },
				this.reportedDown
					? "the node agent's flow socket is back: sending the queued connection records"
					: "sending connection records to the node agent's flow socket",
			);
			this.reportedDown = false;
			this.scheduleFlush();
		});
		// The agent sends nothing; reading keeps a half-closed socket noticed.
		s.on('data', () => undefined);
		s.on('error', (err: Error & { code?: string }) => {
			if (!this.reportedDown) {
				this.reportedDown = true;
				this.o.log.warn(
					{ component: 'flows', socket: this.o.socketPath, err: err.message, code: err.code },
					`the node agent's flow socket is unavailable: connection records are queued (the newest ${this.queue.capacity}) until it is back (is weir-agent running on this node, with the host's /var/run/weir/ztunnel mounted in both?)`,
				);
			}
		});
		s.on('close', () => {
			if (this.socket !== s) return;
			const was = this.connected;
			this.socket = undefined;
			this.connected = false;
			this.blocked = false;
			this.up.set(0);
			if (was && !this.reportedDown) {
				this.reportedDown = true;
				this.o.log.warn(
					{ component: 'flows', socket: this.o.socketPath },
					'the node agent closed the flow socket: connection records are queued until it is back',
				);
			}
			this.scheduleReconnect();
		});
	}

	private scheduleReconnect(): void {
		if (this.stopped) return;
		const max = this.o.backoffMs?.max ?? 5000;
		const wait = Math.min(max, this.delay) * (0.5 + Math.random() / 2);
		this.delay = Math.min(max, this.delay * 2);
		this.retry = setTimeout(() => this.connect(), wait);
		this.retry.unref();
	}
}
