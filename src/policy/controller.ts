// The policy controller: on every change of the watched objects or of the local
// endpoints, compiles a snapshot and applies the difference to the datapath maps.
// Nothing is enforced from a partial view: until every watch has listed once, the
// maps keep what they hold (a restarted agent keeps the previous agent's state).
import type * as k8s from '@kubernetes/client-node';
import { EndpointInfo } from '../kernel/codecs.js';
import { isTerminated, plainNetworkPolicy, podIps } from '../cluster/objects.js';
import { CompileCache, Compiled, EndpointMtls, RuleIdAllocator, compile } from './compiler.js';
import { IdentityAllocator } from './identity.js';
import { NamespaceInfo, NetworkPolicy, NodeInfo, PodInfo } from './model.js';
import { ApplyStats, MapReconciler, PolicyMaps } from './reconcile.js';
import type { LocalEndpoint } from '../shared/endpoint.js';
import { Coalescer } from '../shared/coalesce.js';
import { meshAnnotations } from '../shared/mesh.js';

/** The objects the controller compiles from (informer caches, or fixtures). */
export interface Snapshot {
	synced: boolean;
	pods: readonly k8s.V1Pod[];
	namespaces: readonly k8s.V1Namespace[];
	policies: readonly k8s.V1NetworkPolicy[];
	nodes: readonly k8s.V1Node[];
	/**
	 * Istio PeerAuthentications as listed. The CRD may be absent: then, and until their
	 * watch has answered once, there are none (every meshed pod PERMISSIVE).
	 */
	peerAuthentications?: readonly unknown[];
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
	if (isTerminated(p)) return undefined;
	const ips = podIps(p);
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
	const annotations = meshAnnotations(p.metadata?.annotations);
	if (Object.keys(annotations).length) info.annotations = annotations;
	if (p.spec?.nodeName) info.nodeName = p.spec.nodeName;
	if (p.spec?.hostNetwork) info.hostNetwork = true;
	return info;
}

/** A NetworkPolicy as the compiler reads it (the API's own field names). */
export function networkPolicy(p: k8s.V1NetworkPolicy): NetworkPolicy {
	return plainNetworkPolicy(p) as NetworkPolicy;
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

export class PolicyController {
	private readonly identities = new IdentityAllocator();
	private readonly rules = new RuleIdAllocator();
	private readonly cache = new CompileCache();
	/** informer objects are replaced on change: convert each one once */
	private readonly podInfos = new WeakMap<k8s.V1Pod, PodInfo | null>();
	private readonly reconciler: MapReconciler;
	private readonly pending: Coalescer;
	private last: Compiled | undefined;
	private reservedByIdentity = new Map<number, string>();
	private isolation = new Map<number, { ingress: string[]; egress: string[] }>();
	private mtlsByEp = new Map<number, EndpointMtls>();
	/** PeerAuthentication problems already logged (each is logged once, while it lasts) */
	private mtlsProblemsLogged = new Set<string>();
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
			/** whether mesh membership is honoured, read on every run (default: yes); false flags no endpoint or address as meshed */
			mesh?: () => boolean;
			/** the namespace of mesh-wide PeerAuthentication (default DEFAULT_ROOT_NAMESPACE, as the ztunnel's) */
			rootNamespace?: string;
			/** coalesce bursts of changes (ms) */
			debounceMs?: number;
		},
	) {
		this.reconciler = new MapReconciler(opts.maps);
		this.pending = new Coalescer(() => this.run(), opts.debounceMs);
	}

	/** Something changed: compile soon (bursts coalesce into one run). */
	schedule(): void {
		this.pending.schedule();
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
				if (!p.ips.includes(e.ip) || !p.nodeName)
					pods[i] = { ...p, ips: p.ips.includes(e.ip) ? p.ips : [e.ip, ...p.ips], nodeName: p.nodeName ?? this.opts.node };
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
				mesh: this.opts.mesh?.() ?? true,
				peerAuthentications: snap.peerAuthentications ?? [],
				...(this.opts.rootNamespace ? { rootNamespace: this.opts.rootNamespace } : {}),
			});
			const ifindex = new Map(local.map((e) => [e.ip, e.ifindex]));
			const endpoints = new Map<string, EndpointInfo>();
			for (const [ip, ep] of compiled.endpoints) {
				const idx = ifindex.get(ip);
				if (idx !== undefined) endpoints.set(ip, { epId: ep.epId, identity: ep.identity, ifindex: idx, flags: ep.flags });
			}
			const stats = this.reconciler.apply({
				ipcache: compiled.ipcache,
				ipcacheFlags: compiled.ipcacheFlags,
				endpoints,
				policy: compiled.policyTrie,
				policyChanges: compiled.policyChanges,
				mtlsPorts: compiled.mtlsPorts,
				liveEndpoints: new Set(local.map((e) => e.ip)),
			});
			this.remember(compiled);
			for (const p of compiled.problems) this.opts.log.warn({ policy: p.policy, problem: p.message }, 'NetworkPolicy not fully enforceable');
			this.logMtlsProblems(compiled);
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

	private remember(c: Compiled): void {
		this.last = c;
		const reserved = new Map<number, string>();
		for (const [cidr, id] of c.ipcache) if (!c.identityLabels.has(id) && !cidr.endsWith('/32')) reserved.set(id, `cidr:${cidr}`);
		this.reservedByIdentity = reserved;
		this.isolation = new Map([...c.endpoints.values()].map((e) => [e.epId, e.isolatedBy]));
		this.mtlsByEp = new Map([...c.endpoints.values()].flatMap((e) => (e.mtls ? [[e.epId, e.mtls] as const] : [])));
	}

	private logMtlsProblems(c: Compiled): void {
		const now = new Set<string>();
		for (const p of c.mtlsProblems) {
			const key = `${p.policy}\0${p.message}`;
			now.add(key);
			if (!this.mtlsProblemsLogged.has(key)) this.opts.log.warn({ policy: p.policy, problem: p.message }, `PeerAuthentication: ${p.message}`);
		}
		this.mtlsProblemsLogged = now;
	}

	get compiled(): Compiled | undefined {
		return this.last;
	}

	/** What the last applied state says about verdicts: the rule behind a rule id, what isolates an endpoint, which local pods are meshed, a pod address's identity. */
	verdictLookups(): {
		rule(ruleId: number): { namespace: string; name: string; direction: string; index: number } | undefined;
		isolatedBy(epId: number, direction: 'ingress' | 'egress'): string[];
		reservedName(identity: number): string | undefined;
		meshed(ip: string): boolean;
		identityOf(ip: string): number | undefined;
		mtlsStrictBy(epId: number, port: number): string | undefined;
	} {
		return {
			rule: (id) => this.last?.rules.get(id),
			isolatedBy: (epId, dir) => this.isolation.get(epId)?.[dir] ?? [],
			reservedName: (id) => this.reservedByIdentity.get(id),
			meshed: (ip) => this.last?.endpoints.get(ip)?.mesh.meshed === true,
			identityOf: (ip) => this.last?.ipcache.get(`${ip}/32`),
			mtlsStrictBy: (epId, port) => {
				const m = this.mtlsByEp.get(epId);
				const d = m?.ports.get(port) ?? m;
				return d?.mode === 'STRICT' ? d.policy : undefined;
			},
		};
	}

	stop(): void {
		this.pending.cancel();
	}
}
