// NetworkPolicy (networking.k8s.io/v1) compiled into the datapath's map contents.
// A pure function of its inputs (and of the identity/rule-id allocators, which only
// ever hand out stable numbers): the shell that watches the API calls it on a cache
// snapshot and applies the difference.
//
// Choices the API leaves to implementations (documented in docs/policy.md):
// - ipBlock selects addresses, pod addresses included (what the upstream NetworkPolicy
//   e2e suite checks, and Calico does): a pod whose IP lies in some ipBlock prefix gets
//   an identity of its own for (labels, longest such prefix), so a rule for the block
//   admits it and not its twins outside. Node addresses keep the host and remote-node
//   identities: an ipBlock does not select nodes.
// - Existing connections: a policy change applies to new connections; connections
//   already admitted keep flowing until they close or expire (conntrack), as in
//   Cilium and Calico.
// - Named ports in egress rules are resolved on the destination pods; pods sharing an
//   identity (same labels in the same namespace) contribute the union of their ports.
// - Traffic from the node itself to its pods is always allowed (kubelet probes).
// Mesh membership (src/shared/mesh.ts: namespace labels, pod labels and annotations)
// becomes two flags for the datapath's capture into the ztunnel: on a meshed local
// endpoint (its TCP may be captured) and on every meshed pod's ipcache entry, on any
// node (the only destinations whose TCP is captured, docs/ztunnel.md).
// PeerAuthentication (Istio's, src/istio/peer-authentication.ts) makes a meshed local
// endpoint STRICT, on all its ports or some (portLevelMtls): its new TCP connections are
// then admitted only from the ztunnel or the node. A pod that is not meshed cannot be
// reached through the ztunnel, so no mode applies to it (as Istio leaves a pod with
// neither sidecar nor ambient alone).
import { Dir, DirValue, EndpointFlags, Identity, IpcacheFlags, MtlsPortMode } from '../kernel/layout.js';
import { IPPROTO, PolicyEntry } from '../kernel/codecs.js';
import { IdentityAllocator, identityKey, identityLabels } from './identity.js';
import { cidrWithin, normaliseCidr } from '../shared/ipv4.js';
import { ContainerPort, IPBlock, NamespaceInfo, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NodeInfo, PodInfo } from './model.js';
import { selectorMatches } from './selector.js';
import { TrieEntry, mtlsPortId, toTrie } from './reconcile.js';
import { MeshMembership, meshMembership } from '../shared/mesh.js';
import { DEFAULT_ROOT_NAMESPACE, type PolicyProblem } from '../istio/istio-config.js';
import { compilePeerAuthentications, workloadMtls, type MtlsDecision, type MtlsMode } from '../istio/peer-authentication.js';

export type Direction = 'ingress' | 'egress';

export interface RuleRef {
	ruleId: number;
	namespace: string;
	name: string;
	direction: Direction;
	/** index of the rule in spec.ingress / spec.egress */
	index: number;
}

export class RuleIdAllocator {
	private readonly ids = new Map<string, number>();
	private next = 1;

	idFor(namespace: string, name: string, direction: Direction, index: number): number {
		const key = `${namespace}/${name}#${direction}[${index}]`;
		let id = this.ids.get(key);
		if (id === undefined) {
			id = this.next++;
			this.ids.set(key, id);
		}
		return id;
	}
}

export interface CompiledEndpoint {
	ip: string;
	epId: number;
	identity: number;
	flags: number;
	namespace: string;
	pod: string;
	/** whether the pod is meshed (EndpointFlags.Meshed in flags) and why */
	mesh: MeshMembership;
	/** PeerAuthentication's decision for a meshed pod; undefined for one that is not (no mode applies) */
	mtls?: EndpointMtls;
	/** policies (namespace/name) that isolate the pod, per direction */
	isolatedBy: { ingress: string[]; egress: string[] };
}

/** What PeerAuthentication decides for a meshed local endpoint. */
export interface EndpointMtls {
	/** the mode of a port no portLevelMtls entry names; STRICT sets EndpointFlags.MtlsStrict */
	mode: MtlsMode;
	/** the PeerAuthentication ('namespace/name') that set it; undefined: none applies (PERMISSIVE) */
	policy?: string;
	/**
	 * every port a portLevelMtls entry names, with its decision; those whose strictness
	 * differs from `mode` are the endpoint's weir_mtls_ports entries (EndpointFlags.MtlsPorts)
	 */
	ports: ReadonlyMap<number, MtlsDecision>;
}

export interface CompileProblem {
	policy: string;
	message: string;
}

export interface CompileInput {
	pods: readonly PodInfo[];
	namespaces: readonly NamespaceInfo[];
	policies: readonly NetworkPolicy[];
	nodes: readonly NodeInfo[];
	/** the node this datapath belongs to: its pods become endpoints */
	localNode: string;
	/** endpoint ids of local pods, by 'namespace/name' (assigned by the CNI) */
	endpointIds: ReadonlyMap<string, number>;
	identities: IdentityAllocator;
	rules: RuleIdAllocator;
	/** per-policy results kept between compiles (optional) */
	cache?: CompileCache;
	/** what the datapath's ipcache holds now (prefix -> identity): numbering hints */
	previousIpcache?: ReadonlyMap<string, number>;
	/** mesh membership honoured (default true); false: no endpoint is meshed (the agent's `mesh` option) */
	mesh?: boolean;
	/** Istio PeerAuthentication objects as listed (security.istio.io/v1); absent or empty: none, every workload PERMISSIVE */
	peerAuthentications?: readonly unknown[];
	/** the namespace whose selector-less PeerAuthentication is mesh-wide (default DEFAULT_ROOT_NAMESPACE) */
	rootNamespace?: string;
}

export interface Compiled {
	/** prefix -> identity */
	ipcache: Map<string, number>;
	/** prefix -> IpcacheFlags, for the prefixes that have any: Meshed on every meshed pod's /32 */
	ipcacheFlags: Map<string, number>;
	/** local pod IP -> endpoint */
	endpoints: Map<string, CompiledEndpoint>;
	/** mtlsPortId(epId, port) -> MtlsPortMode: the ports of meshed endpoints whose mode differs from their endpoint's */
	mtlsPorts: Map<string, number>;
	/** what could not be read of the PeerAuthentications as written, and what was done instead */
	mtlsProblems: PolicyProblem[];
	entries: PolicyEntry[];
	/** the entries as the policy map's keys and values */
	policyTrie: ReadonlyMap<string, TrieEntry>;
	/** trie keys changed since the previous compile with the same cache (undefined: unknown) */
	policyChanges: Set<string> | undefined;
	rules: Map<number, RuleRef>;
	/** identity -> labels, for flows */
	identityLabels: Map<number, Record<string, string>>;
	problems: CompileProblem[];
}

const PROTOCOLS: Record<string, number> = { TCP: IPPROTO.TCP, UDP: IPPROTO.UDP, SCTP: IPPROTO.SCTP };

interface PodView {
	pod: PodInfo;
	/** whether the pod is meshed, and why */
	mesh: MeshMembership;
	identity: number;
	ip: string | undefined;
	/** the longest ipBlock prefix (of any policy) the pod's address lies in */
	within: string | undefined;
}

/** Whether the policy affects a direction (explicit policyTypes, else inferred as the API server does). */
export function policyAffects(p: NetworkPolicy, dir: Direction): boolean {
	const types = p.spec?.policyTypes;
	if (types && types.length > 0) return types.includes(dir === 'ingress' ? 'Ingress' : 'Egress');
	return dir === 'ingress' ? true : (p.spec?.egress?.length ?? 0) > 0;
}

function policyName(p: NetworkPolicy): string {
	return `${p.metadata?.namespace ?? 'default'}/${p.metadata?.name ?? ''}`;
}

interface World {
	sig: string;
	nsByName: Map<string, NamespaceInfo>;
	views: PodView[];
	ipcache: Map<string, number>;
	identityLabels: Map<number, Record<string, string>>;
	byIdentity: Map<number, PodView[]>;
	cidrIds: Map<string, number>;
	/** ipBlock prefix -> identities of the pods whose longest prefix it is */
	podsWithin: Map<string, Set<number>>;
	/** the /32 of every meshed pod */
	meshedPrefixes: string[];
	locals: Array<{ v: PodView; epId: number }>;
	problems: CompileProblem[];
}

/**
 * What every policy compiles against: pods with identities, the ipcache, local
 * endpoints, CIDR identities. Its signature is read straight off the inputs, so an
 * unchanged world is recognised before any identity work.
 */
function worldSignature(input: CompileInput, memo: WeakMap<PodInfo, string>): string {
	const parts: string[] = [input.localNode];
	for (const p of input.pods) {
		let sig = memo.get(p);
		if (sig === undefined) {
			sig = `${p.namespace}/${p.name}|${p.hostNetwork ? 1 : 0}|${p.nodeName ?? ''}|${p.ips.join(',')}|${JSON.stringify(p.labels)}|${JSON.stringify(p.annotations ?? {})}|${JSON.stringify(p.ports)}`;
			memo.set(p, sig);
		}
		parts.push(sig);
	}
	for (const n of input.namespaces) parts.push(`ns:${n.name}=${JSON.stringify(n.labels)}`);
	for (const n of input.nodes) parts.push(`node:${n.name}=${n.ips.join(',')}`);
	for (const [k, v] of input.endpointIds) parts.push(`ep:${k}=${v}`);
	for (const p of input.policies) {
		for (const peer of allPeers(p)) if (peer.ipBlock) parts.push(`cidr:${peer.ipBlock.cidr}-${(peer.ipBlock.except ?? []).join(',')}`);
	}
	return parts.join('\n');
}

function buildWorld(input: CompileInput, sig: string): World {
	const nsByName = new Map(input.namespaces.map((n) => [n.name, n]));
	const problems: CompileProblem[] = [];
	const ipcache = new Map<string, number>();
	const identityLabelMap = new Map<number, Record<string, string>>();
	const usedLabelKeys = new Set<string>();

	// Every ipBlock prefix (cidr and except) of every policy.
	const prefixes = new Set<string>();
	for (const p of input.policies) {
		for (const peer of allPeers(p)) {
			if (!peer.ipBlock) continue;
			try {
				prefixes.add(normaliseCidr(peer.ipBlock.cidr));
				for (const e of peer.ipBlock.except ?? []) prefixes.add(normaliseCidr(e));
			} catch (err) {
				problems.push({ policy: policyName(p), message: `ipBlock: ${(err as Error).message}` });
			}
		}
	}
	const longestPrefix = longestPrefixOf(prefixes);

	// Pods with their identities; host-network pods are the node, not endpoints.
	const views: PodView[] = [];
	const podsWithin = new Map<string, Set<number>>();
	const meshedPrefixes: string[] = [];
	for (const pod of input.pods) {
		if (pod.hostNetwork) continue;
		const ns = nsByName.get(pod.namespace);
		const labels = identityLabels(pod, ns);
		const mesh = meshMembership(pod, ns);
		const ip = pod.ips.find((x) => !x.includes(':'));
		const within = ip === undefined ? undefined : longestPrefix(ip);
		usedLabelKeys.add(identityKey(labels, within));
		const identity = input.identities.forLabels(labels, ip ? input.previousIpcache?.get(`${ip}/32`) : undefined, within);
		identityLabelMap.set(identity, labels);
		views.push({ pod, mesh, identity, ip, within });
		if (ip) ipcache.set(`${ip}/32`, identity);
		if (ip && mesh.meshed) meshedPrefixes.push(`${ip}/32`);
		if (within !== undefined) {
			const set = podsWithin.get(within) ?? new Set<number>();
			set.add(identity);
			podsWithin.set(within, set);
		}
	}
	for (const node of input.nodes) {
		const id = node.name === input.localNode ? Identity.Host : Identity.RemoteNode;
		for (const ip of node.ips) if (!ip.includes(':')) ipcache.set(`${ip}/32`, id);
	}

	// Every prefix gets a CIDR identity for the addresses in it that are not pods or nodes.
	const cidrIds = new Map<string, number>();
	for (const c of prefixes) {
		const id = input.identities.forCidr(c, input.previousIpcache?.get(c));
		cidrIds.set(c, id);
		// A pod or node /32 keeps its own identity.
		if (!ipcache.has(c)) ipcache.set(c, id);
	}
	input.identities.retain(usedLabelKeys, prefixes);

	// Identities by label set, each with the pods behind it (for named egress ports).
	const byIdentity = new Map<number, PodView[]>();
	for (const v of views) {
		const list = byIdentity.get(v.identity) ?? [];
		list.push(v);
		byIdentity.set(v.identity, list);
	}

	// Local endpoints: this node's pods the CNI has wired.
	const locals: Array<{ v: PodView; epId: number }> = [];
	for (const v of views) {
		if (v.pod.nodeName !== input.localNode || !v.ip) continue;
		const epId = input.endpointIds.get(`${v.pod.namespace}/${v.pod.name}`);
		if (epId !== undefined) locals.push({ v, epId });
	}
	return { sig, nsByName, views, ipcache, identityLabels: identityLabelMap, byIdentity, cidrIds, podsWithin, meshedPrefixes, locals, problems };
}

export function compile(input: CompileInput): Compiled {
	const cache = input.cache ?? new CompileCache(true);
	const sig = worldSignature(input, cache.podSignatures);
	let world = cache.worldState;
	if (!world || world.sig !== sig) {
		world = buildWorld(input, sig);
		cache.reset(world);
	}

	const endpoints = new Map<string, CompiledEndpoint>();
	const meshOn = input.mesh ?? true;
	const peerAuth = compilePeerAuthentications(input.peerAuthentications ?? [], { rootNamespace: input.rootNamespace ?? DEFAULT_ROOT_NAMESPACE });
	const mtlsPorts = new Map<string, number>();
	for (const { v, epId } of world.locals) {
		const mesh = meshOn ? v.mesh : { meshed: false, reason: 'mesh disabled on this node' };
		let flags = mesh.meshed ? EndpointFlags.Meshed : 0;
		let mtls: EndpointMtls | undefined;
		if (mesh.meshed) {
			const m = workloadMtls(peerAuth, { namespace: v.pod.namespace, labels: v.pod.labels });
			const strict = m.workload.mode === 'STRICT';
			if (strict) flags |= EndpointFlags.MtlsStrict;
			for (const [port, d] of m.ports) {
				if ((d.mode === 'STRICT') === strict) continue;
				mtlsPorts.set(mtlsPortId(epId, port), d.mode === 'STRICT' ? MtlsPortMode.Strict : MtlsPortMode.Permissive);
				flags |= EndpointFlags.MtlsPorts;
			}
			mtls = { ...m.workload, ports: m.ports };
		}
		endpoints.set(v.ip!, {
			ip: v.ip!,
			epId,
			identity: v.identity,
			flags,
			namespace: v.pod.namespace,
			pod: v.pod.name,
			mesh,
			...(mtls ? { mtls } : {}),
			isolatedBy: { ingress: [], egress: [] },
		});
	}

	// Each policy compiles on its own; while the world is unchanged, an unchanged
	// policy reuses its output, and only changed policies touch the merged trie.
	const ctx: PolicyContext = {
		input,
		locals: world.locals,
		views: world.views,
		byIdentity: world.byIdentity,
		nsByName: world.nsByName,
		cidrIds: world.cidrIds,
		podsWithin: world.podsWithin,
	};
	const seen = new Set<string>();
	const outputs: PolicyOutput[] = [];
	for (const p of input.policies) {
		const key = policyName(p);
		seen.add(key);
		const psig = JSON.stringify(p.spec ?? null);
		let out = cache.policies.get(key);
		if (!out || out.sig !== psig) {
			if (out) cache.unmerge(out);
			out = compilePolicy(p, ctx, psig);
			out.trie = toTrie(out.entries);
			// With a long-lived cache the trie is what lives on; entries only on request.
			if (!cache.keepEntries) out.entries = [];
			cache.policies.set(key, out);
			cache.merge(out);
		}
		outputs.push(out);
	}
	for (const [k, out] of cache.policies) {
		if (seen.has(k)) continue;
		cache.unmerge(out);
		cache.policies.delete(k);
	}

	const rules = new Map<number, RuleRef>();
	const problems = [...world.problems];
	for (const out of outputs) {
		for (const r of out.rules) rules.set(r.ruleId, r);
		for (const iso of out.isolation) {
			const ep = endpoints.get(iso.ip)!;
			ep.flags |= iso.dir === 'ingress' ? EndpointFlags.IngressIsolated : EndpointFlags.EgressIsolated;
			ep.isolatedBy[iso.dir].push(out.name);
		}
		problems.push(...out.problems);
	}
	const compiled: Compiled = {
		ipcache: world.ipcache,
		ipcacheFlags: new Map(meshOn ? world.meshedPrefixes.map((p) => [p, IpcacheFlags.Meshed]) : []),
		endpoints,
		mtlsPorts,
		mtlsProblems: [...peerAuth.problems],
		entries: [],
		policyTrie: cache.trie,
		policyChanges: cache.takeChanges(),
		rules,
		identityLabels: world.identityLabels,
		problems,
	};
	// The flat entry list is for tests and tools; build it only when asked.
	let flat: PolicyEntry[] | undefined;
	Object.defineProperty(compiled, 'entries', { get: () => (flat ??= outputs.flatMap((o) => o.entries)), enumerable: true });
	return compiled;
}

/**
 * State kept between compiles: the world, each policy's output, and the merged trie
 * of all policies (a key claimed by several rules keeps the lowest rule id), with the
 * keys changed since the last compile so the reconciler need not diff everything.
 */
export class CompileCache {
	/** keep each policy's flat entries (tests, tools); agents keep only the trie */
	constructor(readonly keepEntries = false) {}
	worldState: World | undefined;
	/** per pod object: its part of the world signature (pod objects are replaced on change) */
	readonly podSignatures = new WeakMap<PodInfo, string>();
	readonly policies = new Map<string, PolicyOutput>();
	readonly trie = new Map<string, TrieEntry>();
	private readonly claims = new Map<string, TrieEntry[]>();
	private changes: Set<string> | undefined = undefined;

	reset(world: World): void {
		this.worldState = world;
		this.policies.clear();
		this.trie.clear();
		this.claims.clear();
		this.changes = undefined; // everything may have changed: full diff
	}

	merge(out: PolicyOutput): void {
		for (const [hex, t] of out.trie!) {
			const list = this.claims.get(hex);
			if (list) list.push(t);
			else this.claims.set(hex, [t]);
			this.refresh(hex);
		}
	}

	unmerge(out: PolicyOutput): void {
		for (const [hex, t] of out.trie ?? []) {
			const list = this.claims.get(hex);
			if (!list) continue;
			const i = list.indexOf(t);
			if (i >= 0) list.splice(i, 1);
			if (list.length === 0) this.claims.delete(hex);
			this.refresh(hex);
		}
	}

	private refresh(hex: string): void {
		const list = this.claims.get(hex);
		let best: TrieEntry | undefined;
		for (const t of list ?? []) if (!best || t.ruleId < best.ruleId) best = t;
		if (best) this.trie.set(hex, best);
		else this.trie.delete(hex);
		this.changes?.add(hex);
	}

	/** Keys changed since the last call (undefined: unknown, diff everything). */
	takeChanges(): Set<string> | undefined {
		const c = this.changes;
		this.changes = new Set();
		return c;
	}
}

export interface PolicyOutput {
	name: string;
	sig: string;
	entries: PolicyEntry[];
	/** the entries as trie keys, encoded on first use */
	trie?: Map<string, TrieEntry>;
	isolation: Array<{ ip: string; dir: Direction }>;
	rules: RuleRef[];
	problems: CompileProblem[];
}

interface PolicyContext {
	input: CompileInput;
	locals: Array<{ v: PodView; epId: number }>;
	views: PodView[];
	byIdentity: Map<number, PodView[]>;
	nsByName: Map<string, NamespaceInfo>;
	cidrIds: Map<string, number>;
	podsWithin: Map<string, Set<number>>;
}

function compilePolicy(p: NetworkPolicy, c: PolicyContext, sig: string): PolicyOutput {
	const name = policyName(p);
	const out: PolicyOutput = { name, sig, entries: [], isolation: [], rules: [], problems: [] };
	const ns = p.metadata?.namespace ?? 'default';
	if (!p.spec) return out;
	let selected: Array<{ v: PodView; epId: number }>;
	try {
		const sel = p.spec.podSelector ?? {};
		selected = c.locals.filter((l) => l.v.pod.namespace === ns && selectorMatches(sel, l.v.pod.labels));
	} catch (err) {
		out.problems.push({ policy: name, message: (err as Error).message });
		return out;
	}
	if (selected.length === 0) return out;
	for (const dir of ['ingress', 'egress'] as const) {
		if (!policyAffects(p, dir)) continue;
		for (const l of selected) out.isolation.push({ ip: l.v.ip!, dir });
		const ruleList = dir === 'ingress' ? (p.spec.ingress ?? []) : (p.spec.egress ?? []);
		ruleList.forEach((rule, index) => {
			const ruleId = c.input.rules.idFor(ns, p.metadata?.name ?? '', dir, index);
			out.rules.push({ ruleId, namespace: ns, name: p.metadata?.name ?? '', direction: dir, index });
			const peers = dir === 'ingress' ? (rule as { from?: NetworkPolicyPeer[] }).from : (rule as { to?: NetworkPolicyPeer[] }).to;
			try {
				// The peers' identities are the same for every selected pod: compute them once.
				const base = {
					dir,
					ruleId,
					policyNs: ns,
					peers,
					ports: rule.ports,
					views: c.views,
					byIdentity: c.byIdentity,
					nsByName: c.nsByName,
					cidrIds: c.cidrIds,
					podsWithin: c.podsWithin,
				};
				const peerIds = peersToIdentities(base as RuleContext);
				for (const l of selected) {
					for (const e of ruleEntries({ ...base, epId: l.epId, self: l.v } as RuleContext, peerIds)) out.entries.push(e);
				}
			} catch (err) {
				out.problems.push({ policy: name, message: `${dir}[${index}]: ${(err as Error).message}` });
			}
		});
	}
	return out;
}

/** The identities a rule's peers select, or 'all' for missing/empty peers. */
function peersToIdentities(ctx: RuleContext): Set<number> | 'all' {
	if (!ctx.peers || ctx.peers.length === 0) return 'all';
	const ids = new Set<number>();
	for (const peer of ctx.peers) for (const id of peerIdentities(peer, ctx)) ids.add(id);
	return ids;
}

function allPeers(p: NetworkPolicy): NetworkPolicyPeer[] {
	return [...(p.spec?.ingress ?? []).flatMap((r) => r.from ?? []), ...(p.spec?.egress ?? []).flatMap((r) => r.to ?? [])];
}

interface RuleContext {
	epId: number;
	dir: Direction;
	ruleId: number;
	policyNs: string;
	peers: NetworkPolicyPeer[] | undefined;
	ports: NetworkPolicyPort[] | undefined;
	self: PodView;
	views: PodView[];
	byIdentity: Map<number, PodView[]>;
	nsByName: Map<string, NamespaceInfo>;
	cidrIds: Map<string, number>;
	podsWithin: Map<string, Set<number>>;
}

/** Identities a peer selects. */
function peerIdentities(peer: NetworkPolicyPeer, ctx: RuleContext): Set<number> {
	const out = new Set<number>();
	if (peer.ipBlock) {
		for (const id of ipBlockIdentities(peer.ipBlock, ctx.cidrIds, ctx.podsWithin)) out.add(id);
		return out;
	}
	for (const v of ctx.views) {
		const ns = ctx.nsByName.get(v.pod.namespace);
		const nsOk = peer.namespaceSelector ? ns !== undefined && selectorMatches(peer.namespaceSelector, ns.labels) : v.pod.namespace === ctx.policyNs;
		if (!nsOk) continue;
		if (peer.podSelector && !selectorMatches(peer.podSelector, v.pod.labels)) continue;
		out.add(v.identity);
	}
	return out;
}

/**
 * Identities an ipBlock admits: for every known prefix inside `cidr` and inside no
 * `except`, its CIDR identity and the identities of the pods whose longest prefix it
 * is. Since every cidr and except is itself a known prefix, the longest-prefix match
 * of an address lies inside `cidr` and outside the excepts exactly when the address does.
 */
function ipBlockIdentities(block: IPBlock, cidrIds: Map<string, number>, podsWithin: Map<string, Set<number>>): number[] {
	const out: number[] = [];
	for (const [prefix, id] of cidrIds) {
		if (!cidrWithin(prefix, block.cidr)) continue;
		if ((block.except ?? []).some((e) => cidrWithin(prefix, e))) continue;
		out.push(id);
		for (const podId of podsWithin.get(prefix) ?? []) out.push(podId);
	}
	return out;
}

/** A lookup of the longest of `prefixes` that contains an address (33 probes at most). */
function longestPrefixOf(prefixes: ReadonlySet<string>): (ip: string) => string | undefined {
	const lengths = [...new Set([...prefixes].map((p) => Number(p.split('/')[1])))].sort((a, b) => b - a);
	if (lengths.length === 0) return () => undefined;
	return (ip) => {
		for (const len of lengths) {
			const candidate = normaliseCidr(`${ip}/${len}`);
			if (prefixes.has(candidate)) return candidate;
		}
		return undefined;
	};
}

interface ResolvedPort {
	protocol: number;
	port?: number;
	endPort?: number;
}

function protocolOf(p: NetworkPolicyPort): number {
	const name = (p.protocol ?? 'TCP').toUpperCase();
	const proto = PROTOCOLS[name];
	if (proto === undefined) throw new Error(`unsupported protocol '${p.protocol}'`);
	return proto;
}

/** Numeric ports as they are; a named port through the given container ports. */
function resolvePort(p: NetworkPolicyPort, containerPorts: readonly ContainerPort[]): ResolvedPort[] {
	const protocol = protocolOf(p);
	if (p.port === undefined) return [{ protocol }];
	if (typeof p.port === 'number' || /^\d+$/.test(p.port)) {
		const port = Number(p.port);
		if (port < 1 || port > 65535) throw new Error(`port ${port} out of range`);
		if (p.endPort !== undefined) {
			if (p.endPort < port || p.endPort > 65535) throw new Error(`endPort ${p.endPort} invalid for port ${port}`);
			return [{ protocol, port, endPort: p.endPort }];
		}
		return [{ protocol, port }];
	}
	const name = p.port;
	return containerPorts
		.filter((cp) => cp.name === name && PROTOCOLS[(cp.protocol ?? 'TCP').toUpperCase()] === protocol)
		.map((cp) => ({ protocol, port: cp.containerPort }));
}

function isNamed(p: NetworkPolicyPort): boolean {
	return typeof p.port === 'string' && !/^\d+$/.test(p.port);
}

function ruleEntries(ctx: RuleContext, peerIds: Set<number> | 'all'): PolicyEntry[] {
	const direction: DirValue = ctx.dir === 'ingress' ? Dir.Ingress : Dir.Egress;
	// Missing or empty peers: every peer (the wildcard identity).
	const allPeers = peerIds === 'all';
	const identities = allPeers ? new Set<number>() : peerIds;
	if (!allPeers && identities.size === 0) return [];
	const out: PolicyEntry[] = [];
	const push = (identity: number, ports: ResolvedPort[] | 'all'): void => {
		if (ports === 'all') {
			out.push({ epId: ctx.epId, identity, direction, ruleId: ctx.ruleId });
			return;
		}
		for (const rp of ports) {
			out.push({
				epId: ctx.epId,
				identity,
				direction,
				protocol: rp.protocol,
				...(rp.port === undefined ? {} : { port: rp.port }),
				...(rp.endPort === undefined ? {} : { endPort: rp.endPort }),
				ruleId: ctx.ruleId,
			});
		}
	};
	const portSpecs = ctx.ports ?? [];
	if (portSpecs.length === 0) {
		if (allPeers) push(Identity.Unknown, 'all');
		else for (const id of identities) push(id, 'all');
		return out;
	}
	// Ingress: named ports resolve on the selected pod itself.
	// Egress: on the destination pods, per identity.
	const fixed = portSpecs.filter((p) => !isNamed(p) || ctx.dir === 'ingress');
	const namedEgress = portSpecs.filter((p) => isNamed(p) && ctx.dir === 'egress');
	const fixedPorts = fixed.flatMap((p) => resolvePort(p, ctx.self.pod.ports));
	if (allPeers) push(Identity.Unknown, fixedPorts);
	else for (const id of identities) push(id, fixedPorts);
	if (namedEgress.length > 0) {
		const targets = allPeers ? [...ctx.byIdentity.keys()] : [...identities];
		for (const id of targets) {
			const pods = ctx.byIdentity.get(id) ?? [];
			const ports = pods.flatMap((v) => namedEgress.flatMap((p) => resolvePort(p, v.pod.ports)));
			push(id, dedupePorts(ports));
		}
	}
	return out;
}

function dedupePorts(ports: ResolvedPort[]): ResolvedPort[] {
	const seen = new Set<string>();
	return ports.filter((p) => {
		const k = `${p.protocol}/${p.port}/${p.endPort}`;
		if (seen.has(k)) return false;
		seen.add(k);
		return true;
	});
}
