// The API paths a node agent lists and watches (src/cluster/watches.ts), with the kind
// of each list: what a stand-in API server must answer.
export const AGENT_LIST_KINDS: Readonly<Record<string, string>> = {
	'/api/v1/pods': 'PodList',
	'/api/v1/namespaces': 'NamespaceList',
	'/apis/networking.k8s.io/v1/networkpolicies': 'NetworkPolicyList',
	'/api/v1/nodes': 'NodeList',
	'/api/v1/services': 'ServiceList',
	'/apis/discovery.k8s.io/v1/endpointslices': 'EndpointSliceList',
};

/** The paths of kinds whose CRD may be absent: a stand-in answers 404 until it is installed. */
export const AGENT_OPTIONAL_LIST_KINDS: Readonly<Record<string, string>> = {
	'/apis/security.istio.io/v1/peerauthentications': 'PeerAuthenticationList',
};
