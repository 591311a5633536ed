// NetworkPolicy (networking.k8s.io/v1) compiled into the datapath's map contents.
// A pure function of its inputs (and of the identity/rule-id allocators, which only
// ever hand out stable numbers): the shell that watches the API calls it on a cache
// snapshot and applies the difference.
//
// Choices the API leaves to implementations (documented in docs/policy.md):
// - ipBlock selects addresses outside the cluster's pods and nodes: a pod IP has its
//   pod identity, so an ipBlock covering it does not select the pod (as in Cilium).
//   Select pods with podSelector/namespaceSelector.
// - Existing connections: a policy change applies to new connections; connections
//   already admitted keep flowing until they close or expire (conntrack), as in
//   Cilium and Calico.
// - Named ports in egress rules are resolved on the destination pods; pods sharing an
//   identity (same labels in the same namespace) contribute the union of their ports.
// - Traffic from the node itself to its pods is always allowed (kubelet probes).
import { Dir, DirValue, EndpointFlags, Identity } from '../bpf/layout.js';
import { IPPROTO, PolicyEntry } from '../bpf/codecs.js';
import { IdentityAllocator, cidrWithin, identityLabels, labelKey, normaliseCidr } from './identity.js';
import {
	ContainerPort,
	IPBlock,
	NamespaceInfo,
	NetworkPolicy,
	NetworkPolicyPeer,
	NetworkPolicyPort,
	NodeInfo,
	PodInfo,
} from './model.js';
import { selectorMatches } from './selector.js';

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
	/** policies (namespace/name) that isolate the pod, per direction */
	isolatedBy: { ingress: string[]; egress: string[] };
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
	/** what the datapath's ipcache holds now (prefix -> identity): numbering hints */
	previousIpcache?: ReadonlyMap<string, number>;
}

export interface Compiled {
	/** prefix -> identity */
	ipcache: Map<string, number>;
	/** local pod IP -> endpoint */
	endpoints: Map<string, CompiledEndpoint>;
	entries: PolicyEntry[];
	rules: Map<number, RuleRef>;
	/** identity -> labels, for flows */
	identityLabels: Map<number, Record<string, string>>;
	problems: CompileProblem[];
}

const PROTOCOLS: Record<string, number> = { TCP: IPPROTO.TCP, UDP: IPPROTO.UDP, SCTP: IPPROTO.SCTP };

interface PodView {
	pod: PodInfo;
	identity: number;
	ip: string | undefined;
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

export function compile(input: CompileInput): Compiled {
	const nsByName = new Map(input.namespaces.map((n) => [n.name, n]));
	const problems: CompileProblem[] = [];
	const ipcache = new Map<string, number>();
	const identityLabelMap = new Map<number, Record<string, string>>();
	const usedLabelKeys = new Set<string>();

	// Pods with their identities; host-network pods are the node, not endpoints.
	const views: PodView[] = [];
	for (const pod of input.pods) {
		if (pod.hostNetwork) continue;
		const labels = identityLabels(pod, nsByName.get(pod.namespace));
		usedLabelKeys.add(labelKey(labels));
		const ip = pod.ips.find((x) => !x.includes(':'));
		const identity = input.identities.forLabels(labels, ip ? input.previousIpcache?.get(`${ip}/32`) : undefined);
		identityLabelMap.set(identity, labels);
		views.push({ pod, identity, ip });
		if (ip) ipcache.set(`${ip}/32`, identity);
	}
	for (const node of input.nodes) {
		const id = node.name === input.localNode ? Identity.Host : Identity.RemoteNode;
		for (const ip of node.ips) if (!ip.includes(':')) ipcache.set(`${ip}/32`, id);
	}

	// Every ipBlock prefix (cidr and except) gets a CIDR identity.
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

	const rules = new Map<number, RuleRef>();
	const entries: PolicyEntry[] = [];
	const endpoints = new Map<string, CompiledEndpoint>();

	for (const v of views) {
		if (v.pod.nodeName !== input.localNode || !v.ip) continue;
		const epId = input.endpointIds.get(`${v.pod.namespace}/${v.pod.name}`);
		if (epId === undefined) continue;
		const ep: CompiledEndpoint = {
			ip: v.ip,
			epId,
			identity: v.identity,
			flags: 0,
			namespace: v.pod.namespace,
			pod: v.pod.name,
			isolatedBy: { ingress: [], egress: [] },
		};
		for (const p of input.policies) {
			const ns = p.metadata?.namespace ?? 'default';
			if (ns !== v.pod.namespace || !p.spec) continue;
			let selected: boolean;
			try {
				selected = selectorMatches(p.spec.podSelector ?? {}, v.pod.labels);
			} catch (err) {
				problems.push({ policy: policyName(p), message: (err as Error).message });
				continue;
			}
			if (!selected) continue;
			for (const dir of ['ingress', 'egress'] as const) {
				if (!policyAffects(p, dir)) continue;
				ep.flags |= dir === 'ingress' ? EndpointFlags.IngressIsolated : EndpointFlags.EgressIsolated;
				ep.isolatedBy[dir].push(policyName(p));
				const ruleList = dir === 'ingress' ? p.spec.ingress ?? [] : p.spec.egress ?? [];
				ruleList.forEach((rule, index) => {
					const ruleId = input.rules.idFor(ns, p.metadata?.name ?? '', dir, index);
					rules.set(ruleId, { ruleId, namespace: ns, name: p.metadata?.name ?? '', direction: dir, index });
					const peers = dir === 'ingress' ? (rule as { from?: NetworkPolicyPeer[] }).from : (rule as { to?: NetworkPolicyPeer[] }).to;
					try {
						entries.push(
							...ruleEntries({
								epId,
								dir,
								ruleId,
								policyNs: ns,
								peers,
								ports: rule.ports,
								self: v,
								views,
								byIdentity,
								nsByName,
								cidrIds,
							}),
						);
					} catch (err) {
						problems.push({ policy: policyName(p), message: `${dir}[${index}]: ${(err as Error).message}` });
					}
				});
			}
		}
		endpoints.set(v.ip, ep);
	}
	return { ipcache, endpoints, entries, rules, identityLabels: identityLabelMap, problems };
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
}

/** Identities a peer selects. */
function peerIdentities(peer: NetworkPolicyPeer, ctx: RuleContext): Set<number> {
	const out = new Set<number>();
	if (peer.ipBlock) {
		for (const id of ipBlockIdentities(peer.ipBlock, ctx.cidrIds)) out.add(id);
		return out;
	}
	for (const v of ctx.views) {
		const ns = ctx.nsByName.get(v.pod.namespace);
		const nsOk = peer.namespaceSelector
			? ns !== undefined && selectorMatches(peer.namespaceSelector, ns.labels)
			: v.pod.namespace === ctx.policyNs;
		if (!nsOk) continue;
		if (peer.podSelector && !selectorMatches(peer.podSelector, v.pod.labels)) continue;
		out.add(v.identity);
	}
	return out;
}

/**
 * CIDR identities an ipBlock admits: every known prefix inside `cidr` and inside no
 * `except`. Since every cidr and except is itself a known prefix, the longest-prefix
 * match of an address lies inside `cidr` exactly when the address does.
 */
function ipBlockIdentities(block: IPBlock, cidrIds: Map<string, number>): number[] {
	const out: number[] = [];
	for (const [prefix, id] of cidrIds) {
		if (!cidrWithin(prefix, block.cidr)) continue;
		if ((block.except ?? []).some((e) => cidrWithin(prefix, e))) continue;
		out.push(id);
	}
	return out;
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

function ruleEntries(ctx: RuleContext): PolicyEntry[] {
	const direction: DirValue = ctx.dir === 'ingress' ? Dir.Ingress : Dir.Egress;
	// Missing or empty peers: every peer (the wildcard identity).
	const allPeers = !ctx.peers || ctx.peers.length === 0;
	const identities = new Set<number>();
	if (!allPeers) {
		for (const peer of ctx.peers!) for (const id of peerIdentities(peer, ctx)) identities.add(id);
		if (identities.size === 0) return [];
	}
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
