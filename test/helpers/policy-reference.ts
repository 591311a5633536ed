// The reference evaluator for NetworkPolicy conformance tests.
//
// Written from the Kubernetes API documentation, separately from src/policy: it
// shares no code with the compiler (not even label-selector matching) and answers one
// question directly from the objects: "may this packet open a connection?". Keep it
// simple and readable; when it and the datapath disagree, read the spec.
//
// It encodes the same implementation choices as the compiler (see docs/policy.md):
// ipBlock selects addresses, pods' included (a pod is selected when its IP lies in
// the block); named ports resolve on the destination.

export interface RefSelector {
	matchLabels?: Record<string, string>;
	matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

export interface RefPeer {
	podSelector?: RefSelector;
	namespaceSelector?: RefSelector;
	ipBlock?: { cidr: string; except?: string[] };
}

export interface RefPort {
	protocol?: string;
	port?: number | string;
	endPort?: number;
}

export interface RefPolicy {
	metadata?: { name?: string; namespace?: string };
	spec?: {
		podSelector: RefSelector;
		policyTypes?: string[];
		ingress?: Array<{ from?: RefPeer[]; ports?: RefPort[] }>;
		egress?: Array<{ to?: RefPeer[]; ports?: RefPort[] }>;
	};
}

export interface RefPod {
	namespace: string;
	name: string;
	labels: Record<string, string>;
	ip: string;
	ports: Array<{ name?: string; containerPort: number; protocol?: string }>;
}

export interface RefWorld {
	namespaces: Array<{ name: string; labels: Record<string, string> }>;
	pods: RefPod[];
	policies: RefPolicy[];
}

/** One end of a connection: a pod, or an address outside the cluster. */
export interface RefEnd {
	ip: string;
	pod?: RefPod;
}

function labelsMatch(sel: RefSelector, labels: Record<string, string>): boolean {
	const labelsHave = (k: string): boolean => k in labels;
	const okLabels = Object.entries(sel.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
	const okExprs = (sel.matchExpressions ?? []).every((e) => {
		if (e.operator === 'In') return labelsHave(e.key) && (e.values ?? []).includes(labels[e.key]!);
		if (e.operator === 'NotIn') return !labelsHave(e.key) || !(e.values ?? []).includes(labels[e.key]!);
		if (e.operator === 'Exists') return labelsHave(e.key);
		if (e.operator === 'DoesNotExist') return !labelsHave(e.key);
		throw new Error(`operator ${e.operator}`);
	});
	return okLabels && okExprs;
}

function ipToNumber(ip: string): number {
	return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

function inCidr(ip: string, cidr: string): boolean {
	const [base, bits] = cidr.split('/');
	const size = 2 ** (32 - Number(bits));
	const start = Math.floor(ipToNumber(base!) / size) * size;
	const n = ipToNumber(ip);
	return n >= start && n < start + size;
}

function policyTypes(p: RefPolicy): string[] {
	if (p.spec?.policyTypes && p.spec.policyTypes.length > 0) return p.spec.policyTypes;
	// The API server's default: Ingress, plus Egress when there are egress rules.
	return (p.spec?.egress ?? []).length > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
}

function peerMatches(world: RefWorld, peer: RefPeer, policyNamespace: string, other: RefEnd): boolean {
	if (peer.ipBlock) {
		if (!inCidr(other.ip, peer.ipBlock.cidr)) return false;
		return !(peer.ipBlock.except ?? []).some((e) => inCidr(other.ip, e));
	}
	if (!other.pod) return false;
	if (peer.namespaceSelector) {
		const ns = world.namespaces.find((n) => n.name === other.pod!.namespace);
		if (!ns || !labelsMatch(peer.namespaceSelector, ns.labels)) return false;
	} else if (other.pod.namespace !== policyNamespace) {
		return false;
	}
	if (peer.podSelector && !labelsMatch(peer.podSelector, other.pod.labels)) return false;
	return true;
}

function portMatches(p: RefPort, protocol: string, port: number, destination: RefEnd): boolean {
	if ((p.protocol ?? 'TCP') !== protocol) return false;
	if (p.port === undefined) return true;
	if (typeof p.port === 'number') {
		return p.endPort === undefined ? port === p.port : port >= p.port && port <= p.endPort;
	}
	// A named port: the destination pod must expose that name at this port.
	return (destination.pod?.ports ?? []).some((cp) => cp.name === p.port && (cp.protocol ?? 'TCP') === protocol && cp.containerPort === port);
}

function ruleAdmits(
	world: RefWorld,
	policyNamespace: string,
	peers: RefPeer[] | undefined,
	ports: RefPort[] | undefined,
	other: RefEnd,
	destination: RefEnd,
	protocol: string,
	port: number,
): boolean {
	const peersOk = !peers || peers.length === 0 || peers.some((peer) => peerMatches(world, peer, policyNamespace, other));
	const portsOk = !ports || ports.length === 0 || ports.some((p) => portMatches(p, protocol, port, destination));
	return peersOk && portsOk;
}

function selecting(world: RefWorld, pod: RefPod, type: string): RefPolicy[] {
	return world.policies.filter(
		(p) => (p.metadata?.namespace ?? 'default') === pod.namespace && labelsMatch(p.spec?.podSelector ?? {}, pod.labels) && policyTypes(p).includes(type),
	);
}

/** May `src` open a connection to `dst` on protocol/port? */
export function referenceAllows(world: RefWorld, src: RefEnd, dst: RefEnd, protocol: 'TCP' | 'UDP' | 'SCTP', port: number): boolean {
	let egressOk = true;
	if (src.pod) {
		const policies = selecting(world, src.pod, 'Egress');
		if (policies.length > 0) {
			egressOk = policies.some((p) =>
				(p.spec?.egress ?? []).some((r) => ruleAdmits(world, p.metadata?.namespace ?? 'default', r.to, r.ports, dst, dst, protocol, port)),
			);
		}
	}
	let ingressOk = true;
	if (dst.pod) {
		const policies = selecting(world, dst.pod, 'Ingress');
		if (policies.length > 0) {
			ingressOk = policies.some((p) =>
				(p.spec?.ingress ?? []).some((r) => ruleAdmits(world, p.metadata?.namespace ?? 'default', r.from, r.ports, src, dst, protocol, port)),
			);
		}
	}
	return egressOk && ingressOk;
}
