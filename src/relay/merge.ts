// Merging every node's flows into one stream ordered by time, the way Hubble relay
// does: flows wait in a bounded priority queue (ordered by flow time) for a short
// window after they arrive, so that flows from a node that is a little behind, or a
// node's backlog when the relay (re)connects, still come out in order; nothing waits on
// a node, so a slow or dead node never stalls the stream. The earliest flow leaves the
// queue once it has waited the window, or at once when the queue is full; any flow
// therefore leaves within twice the window. Only arrival times are compared with the
// relay's clock, so a node whose clock is off delays nothing. Pure: the clock is a
// parameter.
import type { Flow } from '../observe/flow.js';

export interface MergedFlow {
	flow: Flow;
	/** the flow's time, ms since the epoch */
	t: number;
	/** when the relay received it (relay clock, ms) */
	arrival: number;
	/** insertion order: ties in time keep arrival order */
	seq: number;
}

/** A binary min-heap over (t, seq). */
class FlowHeap {
	private readonly a: MergedFlow[] = [];

	get size(): number {
		return this.a.length;
	}

	peek(): MergedFlow | undefined {
		return this.a[0];
	}

	private less(i: number, j: number): boolean {
		const x = this.a[i]!;
		const y = this.a[j]!;
		return x.t < y.t || (x.t === y.t && x.seq < y.seq);
	}

	private swap(i: number, j: number): void {
		const t = this.a[i]!;
		this.a[i] = this.a[j]!;
		this.a[j] = t;
	}

	push(e: MergedFlow): void {
		this.a.push(e);
		let i = this.a.length - 1;
		while (i > 0) {
			const p = (i - 1) >> 1;
			if (!this.less(i, p)) break;
			this.swap(i, p);
			i = p;
		}
	}

	pop(): MergedFlow | undefined {
		const top = this.a[0];
		const last = this.a.pop();
		if (this.a.length && last) {
			this.a[0] = last;
			let i = 0;
			for (;;) {
				const l = 2 * i + 1;
				const r = l + 1;
				let m = i;
				if (l < this.a.length && this.less(l, m)) m = l;
				if (r < this.a.length && this.less(r, m)) m = r;
				if (m === i) break;
				this.swap(i, m);
				i = m;
			}
		}
		return top;
	}
}

export interface MergerOptions {
	/** how long a flow may wait for earlier flows from other nodes (ms) */
	windowMs: number;
	/** flows held at most; a full queue releases its oldest at once */
	capacity: number;
	now: () => number;
	emit: (m: MergedFlow) => void;
}

export const DEFAULT_MERGE: Pick<MergerOptions, 'windowMs' | 'capacity'> = { windowMs: 500, capacity: 4096 };

export class FlowMerger {
	private readonly heap = new FlowHeap();
	private seq = 0;
	private lastOut = -Infinity;
	/** flows released with a time before one already released (arrived later than the window) */
	late = 0;
	/** flows released early because the queue was full */
	forced = 0;
	released = 0;

	constructor(private readonly o: MergerOptions) {
		if (!(o.capacity >= 1)) throw new RangeError('capacity must be at least 1');
	}

	get size(): number {
		return this.heap.size;
	}

	/** Adds one flow (from any node), then releases what is due. */
	push(flow: Flow): void {
		const now = this.o.now();
		const t = Date.parse(flow.time);
		this.heap.push({ flow, t: Number.isFinite(t) ? t : now, arrival: now, seq: this.seq++ });
		while (this.heap.size > this.o.capacity) {
			this.forced++;
			this.out(this.heap.pop()!);
		}
		this.release(now);
	}

	/** Releases the earliest flows while they have waited out the window (call it on a timer too). */
	release(now: number = this.o.now()): void {
		const cutoff = now - this.o.windowMs;
		for (let top = this.heap.peek(); top && top.arrival <= cutoff; top = this.heap.peek()) this.out(this.heap.pop()!);
	}

	/** Releases everything (shutdown). */
	flush(): void {
		while (this.heap.size) this.out(this.heap.pop()!);
	}

	private out(m: MergedFlow): void {
		if (m.t < this.lastOut) this.late++;
		else this.lastOut = m.t;
		this.released++;
		this.o.emit(m);
	}
}
