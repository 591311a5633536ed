// Where Weir's pieces live on a node and which ports they serve, by default. Every
// default path and port is defined here once; flags and the ConfigMap override them.

export const DEFAULTS = {
	/** the runtime's CNI executables (weir-cni, and the plugins it chains with) */
	cniBinDir: '/opt/cni/bin',
	/** the executable the runtime calls, installed into cniBinDir */
	cniExecutable: 'weir-cni',
	/** the runtime's CNI configuration (Weir writes 05-weir.conflist there) */
	cniConfDir: '/etc/cni/net.d',
	/** bpffs mount point */
	bpffsRoot: '/sys/fs/bpf',
	/** the datapath's pinned maps and links */
	pinRoot: '/sys/fs/bpf/weir',
	/** the agent's socket and state directory */
	runDir: '/var/run/weir',
	/** weir-cni forwards each CNI request to the agent over this socket */
	cniSocket: '/var/run/weir/cni.sock',
	/** the CNI server's endpoint journal (with the pinned maps it survives a restart) */
	cniStateFile: '/var/run/weir/cni-endpoints.json',
	/**
	 * the node's ztunnel sends its connection records to the agent here (their own
	 * directory: the ztunnel's DaemonSet mounts only it of the host's /var/run/weir)
	 */
	ztunnelFlowSocket: '/var/run/weir/ztunnel/flows.sock',
	/** the agent's observer API (flows, status) and /metrics */
	observerPort: 9962,
} as const;

/** weir-controller: the cluster-wide flow relay's API and web UI (Service weir-relay), after hubble-relay's 4245 */
export const RELAY_DEFAULTS = {
	port: 4245,
	namespace: 'weir-system',
	service: 'weir-relay',
	/** the Service port's name */
	servicePort: 'http',
} as const;
