// One client following a flow stream (the node agent's or the relay's): NDJSON lines
// written with backpressure. While the client's socket is full, lines wait in a
// bounded queue; when the queue is full the oldest are dropped and counted, and the
// client is told how many it lost (a {"event":"lost"} line, as Hubble's LostEvent) once
// it reads again. A slow client therefore costs the server at most `maxQueued` lines
// and never slows anyone else.
import type { Writable } from 'node:stream';
import type { LostEvent } from './wire.js';

export const DEFAULT_MAX_QUEUED = 2048;

export class FollowSink {
	private readonly queue: string[] = [];
	private head = 0;
	private waiting = false;
	private closed = false;
	/** lines dropped because the client did not read them in time */
	lost = 0;
	private lostUnreported = 0;
	written = 0;

	constructor(
		private readonly out: Writable,
		readonly maxQueued = DEFAULT_MAX_QUEUED,
		private readonly now: () => number = Date.now,
	) {
		out.on('drain', () => {
			this.waiting = false;
			this.pump();
		});
		out.on('close', () => (this.closed = true));
	}

	get queued(): number {
		return this.queue.length - this.head;
	}

	get isClosed(): boolean {
		return this.closed || this.out.destroyed;
	}

	/**
	 * The past a query asked for (bounded by its limit), written whole before the live
	 * lines: none of it is dropped, and live lines queue behind it.
	 */
	sendPast(lines: Iterable<string>): void {
		if (this.isClosed) return;
		for (const l of lines) {
			this.written++;
			this.out.write(`${l}\n`);
		}
		if (this.out.writableNeedDrain) this.waiting = true;
	}

	/** Sends one line (without its newline). Never blocks. */
	send(line: string): void {
		if (this.isClosed) return;
		if (!this.waiting && this.queued === 0) {
			this.write(line);
			return;
		}
		this.queue.push(line);
		if (this.queued > this.maxQueued) {
			this.head++;
			this.lost++;
			this.lostUnreported++;
		}
		if (this.head > 1024 && this.head * 2 > this.queue.length) {
			this.queue.splice(0, this.head);
			this.head = 0;
		}
	}

	private write(line: string): void {
		this.written++;
		if (!this.out.write(`${line}\n`)) this.waiting = true;
	}

	private pump(): void {
		while (!this.waiting && !this.isClosed) {
			if (this.lostUnreported) {
				const n = this.lostUnreported;
				this.lostUnreported = 0;
				this.write(
					JSON.stringify({ event: 'lost', lost: n, time: new Date(this.now()).toISOString(), reason: 'the client read too slowly' } satisfies LostEvent),
				);
				continue;
			}
			if (this.queued === 0) break;
			const line = this.queue[this.head++]!;
			if (this.head === this.queue.length) {
				this.queue.length = 0;
				this.head = 0;
			}
			this.write(line);
		}
	}
}
