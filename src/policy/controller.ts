// The policy controller: on every change of the watched objects or of the local
// endpoints, compiles a snapshot and applies the difference to the datapath maps.
// Nothing is enforced from a partial view: until every watch has listed once, the
// maps keep what they hold (a restarted agent keeps the previous agent's state).
import type * as k8s from '@kubernetes/client-node';
import { EndpointInfo } from '../bpf/codecs.js';
import { FlowContext } from '../observe/flow.js';
import { CompileCache, Compiled, RuleIdAllocator, compile } from './compiler.js';
import { IdentityAllocator } from './identity.js';
import { NamespaceInfo, NetworkPolicy, NodeInfo, PodInfo } from './model.js';
import { ApplyStats, MapReconciler, PolicyMaps } from './reconcile.js';

/** A pod wired on this node by the CNI. */
export interface LocalEndpoint {
	namespace: string;
	pod: string;
	ip: string;
	epId: number;
	ifindex: number;
}

/** The objects the controller compiles from (informer caches, or fixtures). */
export interface Snapshot {
	synced: boolean;
	pods: readonly k8s.V1Pod[];
	namespaces: readonly k8s.V1Namespace[];
	policies: readonly k8s.V1NetworkPolicy[];
	nodes: readonly k8s.V1Node[];
}

export interface ControllerLogger {
	info(obj: object, msg: string): void;
	warn(obj: object, msg: string): void;
	error(obj: object, msg: string): void;
}

export interface ControllerObserver {
	compiled(seconds: number, stats: ApplyStats, c: Compiled): void;
}

export function podInfo(p: k8s.V1Pod): PodInfo | undefined {
	const phase = p.status?.phase;
	if (phase === 'Succeeded' || phase === 'Failed') return undefined;
	const ips = (p.status?.podIPs ?? []).map((x) => x.ip).filter((x): x is string => !!x);
	if (ips.length === 0 && p.status?.podIP) ips.push(p.status.podIP);
	const info: PodInfo = {
		namespace: p.metadata?.namespace ?? 'default',
		name: p.metadata?.name ?? '',
		labels: { ...(p.metadata?.labels ?? {}) },
		ips,
		ports: (p.spec?.containers ?? []).flatMap((c) =>
			(c.ports ?? []).map((cp) => ({
				containerPort: cp.containerPort,
				...(cp.name ? { name: cp.name } : {}),
				...(cp.protocol ? { protocol: cp.protocol } : {}),
			})),
		),
	};
	if (p.spec?.nodeName) info.nodeName = p.spec.nodeName;
	if (p.spec?.hostNetwork) info.hostNetwork = true;
	return info;
}

/**
 * A NetworkPolicy in the API's own field names. @kubernetes/client-node hands list
 * results through its typed models, which rename an ingress rule's `from` to `_from`
 * (a reserved word in its generator), while watch events arrive as plain JSON with
 * `from`. Read as-is, a listed policy's `from` would look missing — "all sources".
 */
export function networkPolicy(p: k8s.V1NetworkPolicy): NetworkPolicy {
	const spec = p.spec;
	if (!spec) return p as NetworkPolicy;
	const ingress = spec.ingress?.map((r) => {
		const { _from, from: plain, ...rest } = r as k8s.V1NetworkPolicyIngressRule & { from?: k8s.V1NetworkPolicyPeer[] };
		const from = plain ?? _from;
		return from === undefined ? rest : { ...rest, from };
	});
	return { ...p, spec: { ...spec, ...(ingress ? { ingress } : {}) } } as NetworkPolicy;
}

export function namespaceInfo(n: k8s.V1Namespace): NamespaceInfo {
	return { name: n.metadata?.name ?? '', labels: { ...(n.metadata?.labels ?? {}) } };
}

export function nodeInfo(n: k8s.V1Node): NodeInfo {
	return {
		name: n.metadata?.name ?? '',
		ips: (n.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address),
	};
}

/** The workload a pod belongs to: Deployment (through its ReplicaSet), else its owner, else the pod. */
export function workloadOf(p: k8s.V1Pod): string {
	const owner = p.metadata?.ownerReferences?.find((o) => o.controller) ?? p.metadata?.ownerReferences?.[0];
	if (!owner) return p.metadata?.name ?? '';
	if (owner.kind === 'ReplicaSet') return owner.name.replace(/-[a-z0-9]{5,10}$/, '');
	return owner.name;
}

export class PolicyController {
	private readonly identities = new IdentityAllocator();
	private readonly rules = new RuleIdAllocator();
	private readonly cache = new CompileCache();
	/** informer objects are replaced on change: convert each one once */
	private readonly podInfos = new WeakMap<k8s.V1Pod, PodInfo | null>();
	private readonly reconciler: MapReconciler;
	private timer: NodeJS.Timeout | undefined;
	private last: Compiled | undefined;
	private podsByIp = new Map<string, { namespace: string; name: string; workload: string; labels: Record<string, string> }>();
	private reservedByIdentity = new Map<number, string>();
	private isolation = new Map<number, { ingress: string[]; egress: string[] }>();
	lastError: string | undefined;
	lastApplied: Date | undefined;
	runs = 0;

	constructor(
		private readonly opts: {
			node: string;
			snapshot: () => Snapshot;
			endpoints: () => readonly LocalEndpoint[];
			maps: PolicyMaps;
			log: ControllerLogger;
			observer?: ControllerObserver;
			/** coalesce bursts of changes (ms) */
			debounceMs?: number;
		},
	) {
		this.reconciler = new MapReconciler(opts.maps);
	}

	/** Something changed: compile soon (bursts coalesce into one run). */
	schedule(): void {
		if (this.timer) return;
		this.timer = setTimeout(() => {
			this.timer = undefined;
			this.run();
		}, this.opts.debounceMs ?? 10);
	}

	/** Compiles and applies now. Returns false while the watches have not synced. */
	run(): boolean {
		const snap = this.opts.snapshot();
		if (!snap.synced) return false;
		const t0 = process.hrtime.bigint();
		try {
			const pods = snap.pods.map((p) => this.podInfoOf(p)).filter((p): p is PodInfo => !!p);
			const local = this.opts.endpoints();
			const endpointIds = new Map(local.map((e) => [`${e.namespace}/${e.pod}`, e.epId]));
			// The CNI's address wins for local pods whose status the API has not caught up with.
			const byName = new Map(pods.map((p, i) => [`${p.namespace}/${p.name}`, i]));
			for (const e of local) {
				const i = byName.get(`${e.namespace}/${e.pod}`);
				if (i === undefined) continue;
				const p = pods[i]!;
				if (!p.ips.includes(e.ip) || !p.nodeName) pods[i] = { ...p, ips: p.ips.includes(e.ip) ? p.ips : [e.ip, ...p.ips], nodeName: p.nodeName ?? this.opts.node };
			}
			const compiled = compile({
				pods,
				namespaces: snap.namespaces.map(namespaceInfo),
				policies: snap.policies.map(networkPolicy),
				nodes: snap.nodes.map(nodeInfo),
				localNode: this.opts.node,
				endpointIds,
				identities: this.identities,
				rules: this.rules,
				previousIpcache: this.reconciler.appliedIpcache(),
				cache: this.cache,
			});
			const ifindex = new Map(local.map((e) => [e.ip, e.ifindex]));
			const endpoints = new Map<string, EndpointInfo>();
			for (const [ip, ep] of compiled.endpoints) {
				const idx = ifindex.get(ip);
				if (idx !== undefined) endpoints.set(ip, { epId: ep.epId, identity: ep.identity, ifindex: idx, flags: ep.flags });
			}
			const stats = this.reconciler.apply({ ipcache: compiled.ipcache, endpoints, policy: compiled.policyTrie, policyChanges: compiled.policyChanges, liveEndpoints: new Set(local.map((e) => e.ip)) });
			this.remember(compiled, snap);
			for (const p of compiled.problems) this.opts.log.warn({ policy: p.policy, problem: p.message }, 'NetworkPolicy not fully enforceable');
			this.runs++;
			this.lastApplied = new Date();
			this.lastError = undefined;
			this.opts.observer?.compiled(Number(process.hrtime.bigint() - t0) / 1e9, stats, compiled);
			return true;
		} catch (err) {
			this.lastError = (err as Error).message;
			this.opts.log.error({ err: this.lastError }, 'policy compile/apply failed; the datapath keeps its previous state');
			return false;
		}
	}

	private podInfoOf(p: k8s.V1Pod): PodInfo | undefined {
		let info = this.podInfos.get(p);
		if (info === undefined) {
			info = podInfo(p) ?? null;
			this.podInfos.set(p, info);
		}
		return info ?? undefined;
	}

	private remember(c: Compiled, snap: Snapshot): void {
		this.last = c;
		const byIp = new Map<string, { namespace: string; name: string; workload: string; labels: Record<string, string> }>();
		for (const p of snap.pods) {
			const info = this.podInfoOf(p);
			if (!info || info.hostNetwork) continue;
			for (const ip of info.ips) byIp.set(ip, { namespace: info.namespace, name: info.name, workload: workloadOf(p), labels: info.labels });
		}
		this.podsByIp = byIp;
		const reserved = new Map<number, string>();
		for (const [cidr, id] of c.ipcache) if (!c.identityLabels.has(id) && !cidr.endsWith('/32')) reserved.set(id, `cidr:${cidr}`);
		this.reservedByIdentity = reserved;
		this.isolation = new Map([...c.endpoints.values()].map((e) => [e.epId, e.isolatedBy]));
	}

	get compiled(): Compiled | undefined {
		return this.last;
	}

	/** The lookups flows need, over the last applied state. */
	flowContext(wallClockMs: (monoNs: bigint) => number): FlowContext {
		return {
			node: this.opts.node,
			podByIp: (ip) => this.podsByIp.get(ip),
			reservedName: (id) => this.reservedByIdentity.get(id),
			rule: (id) => this.last?.rules.get(id),
			isolatedBy: (epId, dir) => this.isolation.get(epId)?.[dir] ?? [],
			wallClockMs,
		};
	}

	stop(): void {
		clearTimeout(this.timer);
		this.timer = undefined;
	}
}

/** Maps CLOCK_MONOTONIC ns (the datapath's clock) to wall-clock ms. */
export function monoToWallClock(): (monoNs: bigint) => number {
	const offsetMs = Date.now() - Number(process.hrtime.bigint() / 1_000_000n);
	return (monoNs) => offsetMs + Number(monoNs / 1_000_000n);
}
