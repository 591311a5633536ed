// The local endpoint: a pod wired on this node. The CNI server produces them, the
// policy controller compiles for them, the agent wires the one to the other.

/** A pod wired on this node by the CNI. */
export interface LocalEndpoint {
	namespace: string;
	pod: string;
	ip: string;
	epId: number;
	ifindex: number;
	/** the pod's network namespace (CNI_NETNS), when the CNI wired it */
	netns?: string;
}

/** Where local endpoints come from (the CNI server's endpoint store, or a file in labs). */
export interface EndpointSource {
	list(): readonly LocalEndpoint[];
	onChange(cb: () => void): void;
}
