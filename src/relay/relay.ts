// The cluster-wide relay: one NodeStream per node agent, their flows merged by time
// (FlowMerger), kept in a bounded history, aggregated into the service map and fanned
// out to every follower through its own bounded, backpressured sink.
//
// Memory is bounded by construction: the history (`historySize` flows), the merge
// queue (`merge.capacity` flows), the service map (`mapEdges` edges), and per follower
// `followQueue` lines, with at most `maxFollowers` followers. docs/relay.md states the
// figures that follow from the defaults.
import type { Flow, NodeEvent, NodeStatusView, ServiceMapView } from '../shared/wire.js';
import { flowMatches, type RelayFilter } from './filter.js';
import { FollowSink } from '../shared/follow-sink.js';
import { FlowHistory, type StoredFlow } from './history.js';
import { DEFAULT_MERGE, FlowMerger, type MergedFlow } from './merge.js';
import { NODE_STREAM_DEFAULTS, NodeStream, type NodeStreamOptions } from './node-stream.js';
import { ServiceMap } from './service-map.js';
import type { AgentTarget, ObserverTransport } from './transport.js';

export interface RelayLogger {
	info(obj: object, msg: string): void;
	warn(obj: object, msg: string): void;
}

export interface RelayOptions {
	transport: ObserverTransport;
	historySize: number;
	merge: { windowMs: number; capacity: number };
	mapEdges: number;
	followQueue: number;
	maxFollowers: number;
	node: Partial<Pick<NodeStreamOptions, 'backfill' | 'healthIntervalMs' | 'timeoutMs' | 'backoff'>>;
	now: () => number;
	log: RelayLogger;
}

export const RELAY_DEFAULTS = {
	historySize: 20_000,
	merge: DEFAULT_MERGE,
	mapEdges: 10_000,
	followQueue: 2048,
	maxFollowers: 64,
};

interface Follower {
	filter: RelayFilter;
	sink: FollowSink;
}

export class TooManyFollowersError extends Error {
	readonly code = 'WEIR_ERR_TOO_MANY_FOLLOWERS';
	readonly statusCode = 503;
}

export class Relay {
	private readonly streams = new Map<string, NodeStream>();
	/** cluster nodes with no agent to read (name -> why) */
	private readonly missing = new Map<string, string>();
	private readonly merger: FlowMerger;
	private readonly history: FlowHistory;
	readonly map: ServiceMap;
	private readonly followers = new Set<Follower>();
	private readonly seenNamespaces = new Set<string>();
	private clusterNamespaces: string[] = [];
	private timer: NodeJS.Timeout | undefined;
	/** flows received from all nodes */
	received = 0;
	private readonly o: RelayOptions;

	constructor(o: Partial<RelayOptions> & Pick<RelayOptions, 'transport'>) {
		this.o = {
			...RELAY_DEFAULTS,
			node: {},
			now: Date.now,
			log: { info: () => {}, warn: () => {} },
			...o,
		};
		this.history = new FlowHistory(this.o.historySize);
		this.map = new ServiceMap(this.o.mapEdges);
		this.merger = new FlowMerger({ ...this.o.merge, now: this.o.now, emit: (m) => this.emit(m) });
	}

	start(): void {
		this.timer = setInterval(() => this.merger.release(), Math.max(20, Math.floor(this.o.merge.windowMs / 4)));
		this.timer.unref();
	}

	stop(): void {
		clearInterval(this.timer);
		for (const s of this.streams.values()) s.stop();
		this.streams.clear();
		this.merger.flush();
	}

	/**
	 * The agents to read and the cluster's nodes: a stream per target (kept across
	 * calls), and every node without a target listed as unavailable with `why`.
	 */
	setTargets(targets: readonly AgentTarget[], nodesWithout: ReadonlyMap<string, string> = new Map()): void {
		const want = new Map(targets.map((t) => [t.node, t]));
		for (const [node, s] of this.streams) {
			if (!want.has(node)) {
				s.stop();
				this.streams.delete(node);
				this.o.log.info({ node }, 'node left the relay');
			}
		}
		for (const [node, t] of want) {
			const s = this.streams.get(node);
			if (s) s.retarget(t);
			else {
				const n = new NodeStream(t, {
					...NODE_STREAM_DEFAULTS,
					...this.o.node,
					transport: this.o.transport,
					now: this.o.now,
					onFlow: (f) => this.receive(f),
					onState: (v) => this.nodeChanged(v),
				});
				this.streams.set(node, n);
				this.o.log.info({ node, endpoint: n.status().endpoint }, 'following node');
				n.start();
			}
		}
		this.missing.clear();
		for (const [node, why] of nodesWithout) if (!want.has(node)) this.missing.set(node, why);
	}

	setNamespaces(names: readonly string[]): void {
		this.clusterNamespaces = [...names];
	}

	private receive(f: Flow): void {
		this.received++;
		this.merger.push(f);
	}

	private emit(m: MergedFlow): void {
		const s: StoredFlow = { flow: m.flow, t: m.t, line: JSON.stringify(m.flow) };
		this.history.add(s);
		this.map.add(m.flow, m.t);
		for (const e of [m.flow.source, m.flow.destination]) if (e.namespace) this.seenNamespaces.add(e.namespace);
		for (const f of this.followers) {
			if (f.sink.isClosed) this.followers.delete(f);
			else if (flowMatches(m.flow, f.filter, m.t)) f.sink.send(s.line);
		}
	}

	private nodeChanged(v: NodeStatusView): void {
		if (v.state === 'unavailable') this.o.log.warn({ node: v.name, error: v.error }, 'node unavailable');
		else this.o.log.info({ node: v.name, state: v.state }, 'node state');
		const line = JSON.stringify({ event: 'node', node: v.name, state: v.state, ...(v.error ? { error: v.error } : {}), time: v.since } satisfies NodeEvent);
		for (const f of this.followers) f.sink.send(line);
	}

	/** Past flows from the history. */
	query(filter: RelayFilter, o: { first?: number; last?: number }): StoredFlow[] {
		return this.history.query(filter, o);
	}

	/** Starts following: `past` lines first, then every new matching flow. Returns the unsubscribe. */
	follow(filter: RelayFilter, sink: FollowSink, past: readonly StoredFlow[]): () => void {
		if (this.followers.size >= this.o.maxFollowers) {
			throw new TooManyFollowersError(`the relay already serves ${this.o.maxFollowers} live streams (its limit); close one or raise --max-followers`);
		}
		sink.sendPast(past.map((p) => p.line));
		const f: Follower = { filter, sink };
		this.followers.add(f);
		return () => this.followers.delete(f);
	}

	nodes(): NodeStatusView[] {
		const out = [...this.streams.values()].map((s) => s.status());
		const now = new Date(this.o.now()).toISOString();
		for (const [name, why] of this.missing) out.push({ name, state: 'unavailable', since: now, error: why, flows: 0, reconnects: 0 });
		return out.sort((a, b) => a.name.localeCompare(b.name));
	}

	namespaces(): string[] {
		return [...new Set([...this.clusterNamespaces, ...this.seenNamespaces])].sort();
	}

	serviceMap(o: { namespaces?: readonly string[]; since?: number }): ServiceMapView {
		return this.map.view(o);
	}

	stats(): Record<string, number> {
		return {
			received: this.received,
			released: this.merger.released,
			mergeQueued: this.merger.size,
			late: this.merger.late,
			forcedOut: this.merger.forced,
			history: this.history.size,
			historyCapacity: this.history.capacity,
			mapEdges: this.map.size,
			followers: this.followers.size,
			followersLost: [...this.followers].reduce((n, f) => n + f.sink.lost, 0),
		};
	}
}
