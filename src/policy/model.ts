// The Kubernetes objects the policy compiler reads, narrowed to the fields it uses.
// Structurally compatible with @kubernetes/client-node's V1 types, so informer
// objects pass straight in; tests build them by hand.

export interface LabelSelectorRequirement {
	key: string;
	operator: string; // In | NotIn | Exists | DoesNotExist
	values?: string[];
}

export interface LabelSelector {
	matchLabels?: Record<string, string>;
	matchExpressions?: LabelSelectorRequirement[];
}

export interface IPBlock {
	cidr: string;
	except?: string[];
}

export interface NetworkPolicyPeer {
	podSelector?: LabelSelector;
	namespaceSelector?: LabelSelector;
	ipBlock?: IPBlock;
}

export interface NetworkPolicyPort {
	protocol?: string; // TCP (default) | UDP | SCTP
	port?: number | string;
	endPort?: number;
}

export interface NetworkPolicyIngressRule {
	from?: NetworkPolicyPeer[];
	ports?: NetworkPolicyPort[];
}

export interface NetworkPolicyEgressRule {
	to?: NetworkPolicyPeer[];
	ports?: NetworkPolicyPort[];
}

export interface NetworkPolicy {
	metadata?: { name?: string; namespace?: string; uid?: string };
	spec?: {
		podSelector: LabelSelector;
		policyTypes?: string[];
		ingress?: NetworkPolicyIngressRule[];
		egress?: NetworkPolicyEgressRule[];
	};
}

export interface ContainerPort {
	name?: string;
	containerPort: number;
	protocol?: string;
}

/** A pod as the compiler sees it. */
export interface PodInfo {
	namespace: string;
	name: string;
	labels: Record<string, string>;
	/** the annotations mesh membership reads (src/shared/mesh.ts); others are not kept */
	annotations?: Record<string, string>;
	/** pod IPs (IPv4 used); empty until the CNI assigned one */
	ips: string[];
	nodeName?: string;
	hostNetwork?: boolean;
	ports: ContainerPort[];
}

export interface NamespaceInfo {
	name: string;
	labels: Record<string, string>;
}

export interface NodeInfo {
	name: string;
	/** node InternalIPs */
	ips: string[];
}
