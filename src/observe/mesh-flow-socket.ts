// Where the node's ztunnel hands the agent its connection records: a unix socket
// (DEFAULTS.ztunnelFlowSocket), NDJSON, one record a line, ztunnel → agent only. Every
// line is checked (parseMeshFlowRecord) before it is passed on; a malformed one is
// counted and skipped, and the connection kept, so one bad record never costs the
// ones after it. Malformed lines are logged at most once per interval, with the count
// of those not logged since. The socket is made at start, after removing a stale one a
// previous agent left, and is the owner's only (0600: both processes run as root).
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { MAX_RECORD_BYTES, MeshFlowRecordError, parseMeshFlowRecord, type MeshFlowRecord } from '../shared/mesh-flow-record.js';

export interface MeshFlowSocketLogger {
	info(o: object, msg: string): void;
	warn(o: object, msg: string): void;
}

export interface MeshFlowSocketOptions {
	path: string;
	log: MeshFlowSocketLogger;
	/** a checked record; must not throw (a throw is counted as a failed record) */
	onRecord(r: MeshFlowRecord): void;
	/** a line that was not a valid record */
	onMalformed?(error: string): void;
	/** at most one log line about malformed records per this long (default 10 s) */
	logIntervalMs?: number;
	now?: () => number;
}

export class MeshFlowSocket {
	private server: Server | undefined;
	private readonly sockets = new Set<Socket>();
	private lastLog = -Infinity;
	private unlogged = 0;
	private nextConn = 0;
	readonly stats = { connections: 0, records: 0, malformed: 0 };

	constructor(private readonly o: MeshFlowSocketOptions) {}

	async start(): Promise<void> {
		mkdirSync(dirname(this.o.path), { recursive: true });
		rmSync(this.o.path, { force: true });
		const server = createServer((s) => this.serve(s));
		await new Promise<void>((resolve, reject) => {
			server.once('error', reject);
			server.listen(this.o.path, () => {
				server.off('error', reject);
				resolve();
			});
		});
		chmodSync(this.o.path, 0o600);
		server.on('error', (err) => this.o.log.warn({ component: 'mesh-flows', socket: this.o.path, err: err.message }, 'ztunnel flow socket error'));
		this.server = server;
		this.o.log.info({ component: 'mesh-flows', socket: this.o.path }, "listening for the node ztunnel's connection records");
	}

	/** Stops listening, ends every connection and removes the socket file. */
	async close(): Promise<void> {
		const server = this.server;
		this.server = undefined;
		if (!server) return;
		const closed = new Promise<void>((resolve) => server.close(() => resolve()));
		for (const s of this.sockets) s.destroy();
		await closed;
		rmSync(this.o.path, { force: true });
	}

	private serve(s: Socket): void {
		const conn = ++this.nextConn;
		this.stats.connections++;
		this.sockets.add(s);
		let buf = '';
		/** skipping the rest of a line that was already too long */
		let skipping = false;
		s.setEncoding('utf8');
		s.on('data', (chunk: string) => {
			let from = 0;
			let nl: number;
			while ((nl = chunk.indexOf('\n', from)) >= 0) {
				const piece = chunk.slice(from, nl);
				from = nl + 1;
				if (skipping) {
					skipping = false;
					buf = '';
					continue;
				}
				const line = buf + piece;
				buf = '';
				this.line(line, conn);
			}
			if (skipping) return;
			buf += chunk.slice(from);
			if (buf.length > MAX_RECORD_BYTES) {
				this.malformed(`a line longer than ${MAX_RECORD_BYTES} bytes (skipped to its end)`, buf, conn);
				buf = '';
				skipping = true;
			}
		});
		s.on('end', () => {
			if (buf && !skipping) this.line(buf, conn);
			buf = '';
		});
		s.on('error', () => undefined);
		s.on('close', () => this.sockets.delete(s));
	}

	private line(line: string, conn: number): void {
		if (!line.trim()) return;
		let rec: MeshFlowRecord;
		try {
			rec = parseMeshFlowRecord(line);
		} catch (err) {
			this.malformed(err instanceof MeshFlowRecordError ? err.message : String(err), line, conn);
			return;
		}
		try {
			this.o.onRecord(rec);
			this.stats.records++;
		} catch (err) {
			this.malformed(`the record could not be added: ${(err as Error).message}`, line, conn);
		}
	}

	private malformed(error: string, line: string, conn: number): void {
		this.stats.malformed++;
		this.o.onMalformed?.(error);
		const now = (this.o.now ?? Date.now)();
		if (now - this.lastLog < (this.o.logIntervalMs ?? 10_000)) {
			this.unlogged++;
			return;
		}
		this.o.log.warn(
			{ component: 'mesh-flows', socket: this.o.path, connection: conn, error, line: line.slice(0, 200), notLogged: this.unlogged },
			`malformed connection record from the ztunnel skipped: ${error} (is weir-ztunnel the same version as weir-agent?)`,
		);
		this.lastLog = now;
		this.unlogged = 0;
	}
}
