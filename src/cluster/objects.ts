// Reading Kubernetes API objects the same way everywhere: what client-node's typed
// models rename, which owner names a pod's workload, which addresses a pod holds,
// whether a pod is meshed.
import type * as k8s from '@kubernetes/client-node';
import { MeshMembership, meshMembership } from '../shared/mesh.js';

/** The workload a pod belongs to: Deployment (through its ReplicaSet), else its owner, else the pod. */
export function workloadOf(p: k8s.V1Pod): string {
	const owner = p.metadata?.ownerReferences?.find((o) => o.controller) ?? p.metadata?.ownerReferences?.[0];
	if (!owner) return p.metadata?.name ?? '';
	if (owner.kind === 'ReplicaSet') return owner.name.replace(/-[a-z0-9]{5,10}$/, '');
	return owner.name;
}

/** A pod that has finished (Succeeded/Failed) holds no address any more. */
export function isTerminated(p: k8s.V1Pod): boolean {
	const phase = p.status?.phase;
	return phase === 'Succeeded' || phase === 'Failed';
}

/** The pod's addresses as its status lists them (podIPs, else podIP). */
export function podIps(p: k8s.V1Pod): string[] {
	const ips = (p.status?.podIPs ?? []).map((x) => x.ip).filter((x): x is string => !!x);
	if (ips.length === 0 && p.status?.podIP) ips.push(p.status.podIP);
	return ips;
}

/** Whether an API pod is meshed, in its namespace (src/shared/mesh.ts): the ztunnel's reading, and the agent's. */
export function podMeshMembership(p: k8s.V1Pod, ns: k8s.V1Namespace | undefined): MeshMembership {
	return meshMembership(
		{
			namespace: p.metadata?.namespace ?? 'default',
			...(p.metadata?.labels ? { labels: p.metadata.labels } : {}),
			...(p.metadata?.annotations ? { annotations: p.metadata.annotations } : {}),
			...(p.spec?.hostNetwork ? { hostNetwork: true } : {}),
		},
		ns?.metadata?.labels ? { labels: ns.metadata.labels } : {},
	);
}

/** An ingress rule in the API's own field names (`from`, not client-node's `_from`). */
export type PlainIngressRule = Omit<k8s.V1NetworkPolicyIngressRule, '_from'> & { from?: k8s.V1NetworkPolicyPeer[] };

/**
 * A NetworkPolicy in the API's own field names. @kubernetes/client-node hands list
 * results through its typed models, which rename an ingress rule's `from` to `_from`
 * (a reserved word in its generator), while watch events arrive as plain JSON with
 * `from`. Read as-is, a listed policy's `from` would look missing — "all sources".
 */
export function plainNetworkPolicy(
	p: k8s.V1NetworkPolicy,
): Omit<k8s.V1NetworkPolicy, 'spec'> & { spec?: Omit<k8s.V1NetworkPolicySpec, 'ingress'> & { ingress?: PlainIngressRule[] } } {
	const spec = p.spec;
	if (!spec) return p;
	const ingress = spec.ingress?.map((r): PlainIngressRule => {
		const { _from, from: plain, ...rest } = r as k8s.V1NetworkPolicyIngressRule & { from?: k8s.V1NetworkPolicyPeer[] };
		const from = plain ?? _from;
		return from === undefined ? rest : { ...rest, from };
	});
	return { ...p, spec: { ...spec, ...(ingress ? { ingress } : {}) } };
}
