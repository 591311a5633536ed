// What the ztunnel knows of the cluster (Istio ztunnel's `state`): the workloads by
// address and the nodes' addresses, rebuilt as one immutable snapshot from the API
// objects by a pure function, and read through the narrow WorkloadLookup interface.
// One writer (the watches' change handler swaps the snapshot); every reader sees a
// whole snapshot, never half an update.
import type * as k8s from '@kubernetes/client-node';
import { isTerminated, podIps, workloadOf } from '../cluster/objects.js';
import { formatSpiffeId, spiffeIdFor } from '../identity/spiffe.js';

export interface Workload {
	namespace: string;
	/** pod name */
	name: string;
	uid: string;
	/** the Deployment/StatefulSet/… that owns the pod, else the pod (Istio's `workload` label) */
	workload: string;
	/** the pod's `app` / `app.kubernetes.io/name` label, Istio's canonical service */
	app: string;
	serviceAccount: string;
	/** spiffe://<trust-domain>/ns/<ns>/sa/<sa> */
	identity: string;
	node: string;
	ip: string;
	labels: Readonly<Record<string, string>>;
	meshed: boolean;
}

/** What the proxy reads: one whole snapshot at a time. */
export interface WorkloadLookup {
	/** the workload holding `ip`, if any (running pods only) */
	byIp(ip: string): Workload | undefined;
	/** a node's InternalIP */
	nodeAddress(node: string): string | undefined;
}

export interface ClusterObjects {
	pods: readonly k8s.V1Pod[];
	namespaces: readonly k8s.V1Namespace[];
	nodes: readonly k8s.V1Node[];
}

/** Decides whether a pod is in the mesh: the agent's rule, `(p, ns) => podMeshMembership(p, ns).meshed` (src/cluster/objects.ts). */
export type Membership = (pod: k8s.V1Pod, namespace: k8s.V1Namespace | undefined) => boolean;

export class StateSnapshot implements WorkloadLookup {
	constructor(
		private readonly workloads: ReadonlyMap<string, Workload>,
		private readonly nodes: ReadonlyMap<string, string>,
	) {}

	static readonly empty = new StateSnapshot(new Map(), new Map());

	byIp(ip: string): Workload | undefined {
		return this.workloads.get(ip);
	}

	nodeAddress(node: string): string | undefined {
		return this.nodes.get(node);
	}

	/** Workloads on `node` (the identities whose certificates the node's ztunnel holds). */
	onNode(node: string): Workload[] {
		return [...this.workloads.values()].filter((w) => w.node === node);
	}

	get size(): number {
		return this.workloads.size;
	}
}

/** The node's InternalIP (IPv4), else its first IPv4 address of any type. */
export function nodeInternalIp(n: k8s.V1Node): string | undefined {
	const addrs = n.status?.addresses ?? [];
	const v4 = (a: k8s.V1NodeAddress): boolean => /^\d+\.\d+\.\d+\.\d+$/.test(a.address);
	return (addrs.find((a) => a.type === 'InternalIP' && v4(a)) ?? addrs.find(v4))?.address;
}

/**
 * Builds the snapshot (pure). Host-network pods hold their node's address, not one of
 * their own, so they are not workloads here; nor are pods without an address yet or
 * that have finished.
 */
export function buildState(objs: ClusterObjects, trustDomain: string, membership: Membership): StateSnapshot {
	const nsByName = new Map(objs.namespaces.map((n) => [n.metadata?.name ?? '', n]));
	const workloads = new Map<string, Workload>();
	for (const p of objs.pods) {
		if (p.spec?.hostNetwork || isTerminated(p) || !p.spec?.nodeName) continue;
		const namespace = p.metadata?.namespace ?? 'default';
		const serviceAccount = p.spec.serviceAccountName || 'default';
		let identity: string;
		try {
			identity = formatSpiffeId(spiffeIdFor(trustDomain, namespace, serviceAccount));
		} catch {
			continue; // not a valid name: the API server would not have admitted it
		}
		const labels = p.metadata?.labels ?? {};
		for (const ip of podIps(p)) {
			if (ip.includes(':')) continue;
			workloads.set(ip, {
				namespace,
				name: p.metadata?.name ?? '',
				uid: p.metadata?.uid ?? '',
				workload: workloadOf(p),
				app: labels['app.kubernetes.io/name'] ?? labels.app ?? workloadOf(p),
				serviceAccount,
				identity,
				node: p.spec.nodeName,
				ip,
				labels,
				meshed: membership(p, nsByName.get(namespace)),
			});
		}
	}
	const nodes = new Map<string, string>();
	for (const n of objs.nodes) {
		const ip = nodeInternalIp(n);
		if (n.metadata?.name && ip) nodes.set(n.metadata.name, ip);
	}
	return new StateSnapshot(workloads, nodes);
}
