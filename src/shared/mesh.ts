// Mesh membership: whether a pod's traffic goes through its node's ztunnel, read off
// its namespace's labels and its own labels and annotations (Weir's, and Istio
// ambient's, so that namespaces labelled for Istio need no relabelling). A pure
// function shared by the agent's policy compiler, which flags meshed endpoints for
// the datapath's capture, and the ztunnel, which must agree on who is meshed.
// docs/ztunnel.md, "Opting in".

/** Namespace label (`enabled`), and pod annotation (`enabled` / `disabled`). */
export const MESH_KEY = 'weir.io/mesh';
/** Istio ambient's label: `ambient` on a namespace or pod opts in, `none` on a pod opts out. */
export const ISTIO_DATAPLANE_MODE = 'istio.io/dataplane-mode';

/**
 * Never meshed, whatever their labels. weir-system holds the workload CA, which signs
 * the ztunnel's certificates: were its pods meshed, reaching the CA would need a
 * ztunnel that cannot start without a certificate from it. kube-system holds DNS and
 * the cluster's own plumbing, which meshed pods and the ztunnel depend on; the mesh
 * must not be able to cut them off.
 */
export const NEVER_MESHED_NAMESPACES: ReadonlySet<string> = new Set(['weir-system', 'kube-system']);

/** The pod annotations membership reads: its callers need keep and compare no other. */
const MESH_ANNOTATIONS: readonly string[] = [MESH_KEY];

/** What membership reads of a pod (structurally, the policy compiler's PodInfo). */
export interface MeshPod {
	namespace: string;
	labels?: Readonly<Record<string, string>>;
	annotations?: Readonly<Record<string, string>>;
	hostNetwork?: boolean;
}

/** What membership reads of the pod's namespace. */
export interface MeshNamespace {
	labels?: Readonly<Record<string, string>>;
}

export interface MeshMembership {
	meshed: boolean;
	/** why, for logs and status: the rule that decided */
	reason: string;
}

/**
 * Whether a pod is meshed. The first rule that applies decides:
 *   1. a host-network pod is never meshed (it is the node, not an endpoint);
 *   2. a pod in weir-system or kube-system is never meshed;
 *   3. a pod that opts out is not: annotation `weir.io/mesh: disabled`, or label
 *      `istio.io/dataplane-mode=none`;
 *   4. a pod that opts in is, whatever its namespace: annotation `weir.io/mesh:
 *      enabled`, or label `istio.io/dataplane-mode=ambient`;
 *   5. a pod in a meshed namespace is: label `weir.io/mesh=enabled` or
 *      `istio.io/dataplane-mode=ambient` on the namespace;
 *   6. any other pod is not.
 * Other values of these keys are no opinion. `namespace` undefined: not known (yet).
 */
export function meshMembership(pod: MeshPod, namespace: MeshNamespace | undefined): MeshMembership {
	if (pod.hostNetwork) return { meshed: false, reason: 'host network' };
	if (NEVER_MESHED_NAMESPACES.has(pod.namespace)) return { meshed: false, reason: `namespace ${pod.namespace} is never meshed` };
	const annotation = pod.annotations?.[MESH_KEY];
	const mode = pod.labels?.[ISTIO_DATAPLANE_MODE];
	if (annotation === 'disabled') return { meshed: false, reason: `pod annotation ${MESH_KEY}: disabled` };
	if (mode === 'none') return { meshed: false, reason: `pod label ${ISTIO_DATAPLANE_MODE}=none` };
	if (annotation === 'enabled') return { meshed: true, reason: `pod annotation ${MESH_KEY}: enabled` };
	if (mode === 'ambient') return { meshed: true, reason: `pod label ${ISTIO_DATAPLANE_MODE}=ambient` };
	const ns = namespace?.labels;
	if (ns?.[MESH_KEY] === 'enabled') return { meshed: true, reason: `namespace label ${MESH_KEY}=enabled` };
	if (ns?.[ISTIO_DATAPLANE_MODE] === 'ambient') return { meshed: true, reason: `namespace label ${ISTIO_DATAPLANE_MODE}=ambient` };
	return { meshed: false, reason: 'not opted in' };
}

/** The annotations of `all` that membership reads (a pod object's annotations can be large). */
export function meshAnnotations(all: Readonly<Record<string, string>> | undefined): Record<string, string> {
	const out: Record<string, string> = {};
	for (const k of MESH_ANNOTATIONS) {
		const v = all?.[k];
		if (v !== undefined) out[k] = v;
	}
	return out;
}
