// What a node agent answers at GET /v1/status: the contract between the agent, which
// serves it, and `weir status`, which prints it. Neither owns it.

export const STATUS_SCHEMA_VERSION = 1;

export interface AgentStatus {
	schema: typeof STATUS_SCHEMA_VERSION;
	node: string;
	/** the agent's package version (image version) */
	version: string;
	startedAt: string;
	/** same meaning as /readyz */
	ready: boolean;
	/** the Kubernetes watches have listed everything once */
	synced: boolean;
	datapath: {
		/** programs loaded and maps pinned under pinRoot */
		loaded: boolean;
		pinRoot: string;
		/** pod veths with the programs attached (pinned links) */
		attachments: number;
		ipcacheEntries: number;
		endpointEntries: number;
		policyEntries: number;
	};
	endpoints: {
		/** pods on this node known to the agent (CNI) */
		local: number;
		/** of those, isolated by at least one NetworkPolicy (either direction) */
		isolated: number;
		/** of those, meshed: their TCP is captured by the node's ztunnel (absent from agents before the mesh opt-in) */
		meshed?: number;
	};
	policy: {
		/** NetworkPolicies in the cluster (all namespaces) */
		networkPolicies: number;
		/** NetworkPolicies that select at least one pod of this node: enforced here */
		enforcedHere: string[];
		/** compile/apply runs so far and the time of the last successful one */
		runs: number;
		lastApplied: string | null;
		/** policies or rules the datapath cannot enforce as written */
		problems: Array<{ policy: string; message: string }>;
	};
	/** ClusterIP Services load-balanced at connect() by Weir (kube-proxy-replacement) */
	services: {
		enabled: boolean;
		/** the cgroup v2 directory the programs are attached to */
		cgroup: string | null;
		/** ClusterIP:port frontends in the maps */
		frontends: number;
		runs: number;
		/** Service ports Weir does not load-balance as written (SCTP, too many backends) */
		problems: Array<{ service: string; message: string }>;
	};
	/** mesh opt-in on this node (absent from agents before it) */
	mesh?: {
		/** the agent's `mesh` option and the datapath's capture are on, and the capture routing is in place */
		enabled: boolean;
		/** the capture's rule and table: installed, removed (mesh off), failed (no pod meshed), unknown (not yet) */
		captureRouting: string;
	};
	/** the last error the agent hit (datapath events, policy compile/apply, map reads), null when healthy */
	lastError: string | null;
}
