// The relay's memory bounds, measured: the heap each bounded structure holds when it is
// full at the defaults (src/relay/relay.ts RELAY_DEFAULTS), filled with the segregation
// scenario's flows as the relay receives them (parsed from JSON lines, one object per
// flow). Run with --expose-gc (bench/relay.bench.ts, scripts/bench.sh relay, runs it so); prints figures, never asserts.
import { emptyFilter } from '../src/relay/filter.js';
import { FlowHistory, type StoredFlow } from '../src/relay/history.js';
import { FlowMerger } from '../src/relay/merge.js';
import { RELAY_DEFAULTS } from '../src/relay/relay.js';
import { ServiceMap } from '../src/relay/service-map.js';
import type { Flow } from '../src/shared/wire.js';
import { scenarioFlow, SCENARIO_TRAFFIC } from '../test/helpers/relay-lab.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function heap(): number {
	gc!();
	gc!();
	return process.memoryUsage().heapUsed;
}

/** The i-th flow as the relay gets it from a node: its JSON line and the parsed object. */
function received(i: number, t0: number): { flow: Flow; line: string } {
	const s = SCENARIO_TRAFFIC[i % SCENARIO_TRAFFIC.length]!;
	const line = JSON.stringify(scenarioFlow({ ...s, node: `n${(i % 2) + 1}`, time: t0 + i, sport: 1024 + (i % 60000) }));
	return { flow: JSON.parse(line) as Flow, line };
}

/** Heap held by what `build` returns (kept alive until measured). */
function measure<T>(build: () => T): { bytes: number; keep: T } {
	const before = heap();
	const keep = build();
	return { bytes: heap() - before, keep };
}

const t0 = Date.now();
const mb = (b: number): string => `${(b / 1024 / 1024).toFixed(1)} MB`;
const per = (b: number, n: number): string => `${Math.round(b / n)} B each`;

const H = RELAY_DEFAULTS.historySize;
const history = measure(() => {
	const h = new FlowHistory(H);
	for (let i = 0; i < H; i++) {
		const { flow, line } = received(i, t0);
		h.add({ flow, t: t0 + i, line } satisfies StoredFlow);
	}
	return h;
});

const Q = RELAY_DEFAULTS.merge.capacity;
const merge = measure(() => {
	const m = new FlowMerger({ windowMs: 3_600_000, capacity: Q, now: () => t0, emit: () => {} });
	for (let i = 0; i < Q; i++) m.push(received(i, t0).flow);
	return m;
});

const E = RELAY_DEFAULTS.mapEdges;
const map = measure(() => {
	const m = new ServiceMap(E);
	for (let i = 0; i < E; i++) {
		const f = received(i, t0).flow;
		f.source.workload = `client-${i}`; // a distinct source workload per edge
		m.add(f, t0 + i);
	}
	return m;
});

// A slow follower's queue holds the newest lines it has not read: at most followQueue
// of them, all among the newest historySize, so they are the history's own strings and
// the queue costs its references. Measured both ways: as the relay holds them, and as
// copies (what they would cost if they were not shared).
const L = RELAY_DEFAULTS.followQueue;
const followers = RELAY_DEFAULTS.maxFollowers;
const newest = history.keep.query(emptyFilter(), { last: L });
const shared = measure(() => Array.from({ length: followers }, () => newest.map((s) => s.line)));
const copies = measure(() => Array.from({ length: L }, (_, i) => received(i, t0).line));
const lineBytes = received(0, t0).line.length;

const bound = history.bytes + merge.bytes + map.bytes + shared.bytes;
console.log(`relay memory at the defaults (heap after GC, node ${process.version}; a flow's JSON line is ${lineBytes} bytes):`);
console.log(`  history      ${H} flows (object + line): ${mb(history.bytes)}, ${per(history.bytes, H)}`);
console.log(`  merge queue  ${Q} flows: ${mb(merge.bytes)}, ${per(merge.bytes, Q)}`);
console.log(`  service map  ${E} edges: ${mb(map.bytes)}, ${per(map.bytes, E)}`);
console.log(
	`  ${followers} slow followers' full queues, ${L} lines each: ${mb(shared.bytes)} (the history's own strings; one queue of copies would be ${mb(copies.bytes)})`,
);
console.log(`  all of them full at once: ${mb(bound)} of heap`);
void [history.keep, merge.keep, map.keep, shared.keep, copies.keep];
