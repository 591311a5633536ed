// The node's recent flows: a fixed-size ring with live followers.
import { Flow, FlowFilter, matchesFilter } from './flow.js';

export type FlowListener = (f: Flow) => void;

export class FlowRing {
	private readonly buf: Array<Flow | undefined>;
	private next = 0;
	private count = 0;
	private readonly listeners = new Set<FlowListener>();
	/** flows ever added (for metrics) */
	total = 0;

	constructor(readonly capacity = 4096) {
		if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
		this.buf = new Array<Flow | undefined>(capacity);
	}

	add(f: Flow): void {
		this.buf[this.next] = f;
		this.next = (this.next + 1) % this.capacity;
		this.count = Math.min(this.count + 1, this.capacity);
		this.total++;
		for (const l of this.listeners) l(f);
	}

	/** The most recent `limit` flows matching `filter`, oldest first. */
	recent(filter: FlowFilter = {}, limit = 100): Flow[] {
		const out: Flow[] = [];
		for (let i = 0; i < this.count && out.length < limit; i++) {
			const idx = (this.next - 1 - i + this.capacity) % this.capacity;
			const f = this.buf[idx]!;
			if (matchesFilter(f, filter)) out.push(f);
		}
		return out.reverse();
	}

	/** Calls `l` for every new flow until the returned function is called. */
	follow(l: FlowListener): () => void {
		this.listeners.add(l);
		return () => this.listeners.delete(l);
	}

	get size(): number {
		return this.count;
	}
}
