// The service controller: on every change of Services or EndpointSlices, compiles the
// load balancer's entries and applies the difference to its maps. Like the policy
// controller, nothing is applied from a partial view: until the watches have listed
// once, the maps keep what the previous agent left (ClusterIPs keep working).
import type * as k8s from '@kubernetes/client-node';
import { Coalescer } from '../shared/coalesce.js';
import { Backend, CompiledServices, Frontend, ServiceEntry, ServiceIdAllocator, ServiceProblem, compileServices, frontendKey } from './compile.js';

/** The load balancer's maps, as the controller needs them (src/kernel/service-lb.ts). */
export interface ServiceMaps {
	/** what the maps hold now; after a restart, what the previous agent applied */
	services(): Array<{ id: number; frontend: Frontend; backends: Backend[]; affinitySec: number }>;
	/** writes the backends first, then the frontend: a connect never sees a half entry */
	upsertService(e: { id: number; frontend: Frontend; backends: readonly Backend[]; affinitySec: number }): void;
	deleteService(f: Frontend): void;
}

export interface ServiceSnapshot {
	synced: boolean;
	services: readonly k8s.V1Service[];
	slices: readonly k8s.V1EndpointSlice[];
}

export interface ServiceControllerLogger {
	warn(obj: object, msg: string): void;
	error(obj: object, msg: string): void;
}

export interface ServiceApplyStats {
	upserted: number;
	deleted: number;
	frontends: number;
}

function signature(e: { id: number; backends: readonly Backend[]; affinitySec: number }): string {
	return `${e.id}|${e.affinitySec}|${e.backends.map((b) => `${b.ip}:${b.port}`).join(',')}`;
}

export class ServiceController {
	private readonly ids = new ServiceIdAllocator();
	/** frontend key -> signature of what the maps hold */
	private applied: Map<string, { frontend: Frontend; sig: string }> | undefined;
	private last: CompiledServices | undefined;
	private byId = new Map<number, ServiceEntry>();
	private readonly pending: Coalescer;
	lastError: string | undefined;
	runs = 0;

	constructor(
		private readonly opts: {
			node: string;
			snapshot: () => ServiceSnapshot;
			maps: ServiceMaps;
			log: ServiceControllerLogger;
			onApplied?: (stats: ServiceApplyStats, seconds: number) => void;
			debounceMs?: number;
		},
	) {
		this.pending = new Coalescer(() => this.run(), opts.debounceMs);
	}

	schedule(): void {
		this.pending.schedule();
	}

	/** The maps' state when this controller first runs: ids are kept, stale entries found. */
	private adopt(): Map<string, { frontend: Frontend; sig: string }> {
		const held = new Map<string, { frontend: Frontend; sig: string }>();
		for (const e of this.opts.maps.services()) {
			const key = frontendKey(e.frontend);
			this.ids.seed(key, e.id);
			held.set(key, { frontend: e.frontend, sig: signature(e) });
		}
		return held;
	}

	/** Compiles and applies now. False while the watches have not synced, or on error. */
	run(): boolean {
		const snap = this.opts.snapshot();
		if (!snap.synced) return false;
		const t0 = process.hrtime.bigint();
		try {
			const applied = this.applied ?? this.adopt();
			const compiled = compileServices({ services: snap.services, slices: snap.slices, ids: this.ids, node: this.opts.node });
			const stats: ServiceApplyStats = { upserted: 0, deleted: 0, frontends: compiled.entries.size };
			const next = new Map<string, { frontend: Frontend; sig: string }>();
			for (const [key, e] of compiled.entries) {
				const sig = signature(e);
				next.set(key, { frontend: e.frontend, sig });
				if (applied.get(key)?.sig === sig) continue;
				this.opts.maps.upsertService(e);
				stats.upserted++;
			}
			for (const [key, held] of applied) {
				if (next.has(key)) continue;
				this.opts.maps.deleteService(held.frontend);
				stats.deleted++;
			}
			this.applied = next;
			this.last = compiled;
			this.byId = new Map([...compiled.entries.values()].map((e) => [e.id, e]));
			for (const p of compiled.problems) this.opts.log.warn({ service: p.service, problem: p.message }, 'Service not fully load-balanced by Weir');
			this.runs++;
			this.lastError = undefined;
			this.opts.onApplied?.(stats, Number(process.hrtime.bigint() - t0) / 1e9);
			return true;
		} catch (err) {
			// What was written stays; the next run diffs against the maps' real state.
			this.applied = undefined;
			this.lastError = (err as Error).message;
			this.opts.log.error({ err: this.lastError }, 'service load balancer update failed; retrying on the next change');
			return false;
		}
	}

	/** The Service behind a translation id (as the maps record per connection). */
	serviceById(id: number): (ServiceEntry['service'] & { frontend: Frontend }) | undefined {
		const e = this.byId.get(id);
		return e ? { ...e.service, frontend: e.frontend } : undefined;
	}

	/** The Service a frontend (ClusterIP, port, protocol) belongs to, as last applied. */
	serviceByFrontend(f: Frontend): (ServiceEntry['service'] & { id: number; frontend: Frontend }) | undefined {
		const e = this.last?.entries.get(frontendKey(f));
		return e ? { ...e.service, id: e.id, frontend: e.frontend } : undefined;
	}

	get problems(): readonly ServiceProblem[] {
		return this.last?.problems ?? [];
	}

	get frontends(): number {
		return this.last?.entries.size ?? 0;
	}

	stop(): void {
		this.pending.cancel();
	}
}
