// The relay's cluster-wide history: the most recent merged flows, a fixed number of
// them (the bound on the relay's memory for flows), each kept with its time and its
// JSON line so that neither is computed twice.
import type { Flow } from '../observe/flow.js';
import { flowMatches, type RelayFilter } from './filter.js';

export interface StoredFlow {
	flow: Flow;
	t: number;
	line: string;
}

const byTime = (a: StoredFlow, b: StoredFlow): number => a.t - b.t;

export class FlowHistory {
	private readonly buf: Array<StoredFlow | undefined>;
	private next = 0;
	private count = 0;

	constructor(readonly capacity: number) {
		if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
		this.buf = new Array<StoredFlow | undefined>(capacity);
	}

	get size(): number {
		return this.count;
	}

	add(s: StoredFlow): void {
		this.buf[this.next] = s;
		this.next = (this.next + 1) % this.capacity;
		this.count = Math.min(this.count + 1, this.capacity);
	}

	private at(i: number): StoredFlow {
		// i = 0 is the oldest kept
		return this.buf[(this.next - this.count + i + this.capacity) % this.capacity]!;
	}

	/**
	 * The oldest `first` or the newest `last` matching flows (all when neither), in time
	 * order (the history is in the merge's order, which only a flow later than the merge
	 * window can break).
	 */
	query(filter: RelayFilter, o: { first?: number; last?: number } = {}): StoredFlow[] {
		const out: StoredFlow[] = [];
		if (o.first !== undefined) {
			for (let i = 0; i < this.count && out.length < o.first; i++) {
				const s = this.at(i);
				if (flowMatches(s.flow, filter, s.t)) out.push(s);
			}
			return out.sort(byTime);
		}
		const limit = o.last ?? Infinity;
		for (let i = this.count - 1; i >= 0 && out.length < limit; i--) {
			const s = this.at(i);
			if (filter.since !== undefined && s.t < filter.since && o.last === undefined) break;
			if (flowMatches(s.flow, filter, s.t)) out.push(s);
		}
		return out.reverse().sort(byTime);
	}
}
