// Pure builders of the components' configuration files and flags: no I/O here.

export const SERVICE_CIDR = '10.96.0.0/16';
export const KUBERNETES_SERVICE_IP = '10.96.0.1';
export const DNS_SERVICE_IP = '10.96.0.10';
export const CLUSTER_CIDR = '10.244.0.0/16';
export const CLUSTER_DOMAIN = 'cluster.local';
/** The lab segment (RFC 2544 benchmarking range): only ever inside network namespaces. */
export const LAB_GATEWAY = '198.18.0.1';
export const LAB_PREFIX = 24;
export const nodeIPFor = (index: number): string => `198.18.0.${11 + index}`;
export const APISERVER_PORT = 6443;

export interface ContainerdPaths {
	root: string;
	state: string;
	socket: string;
	cniBinDir: string;
	cniConfDir: string;
	/** CRI streaming port ("0": any free one) */
	streamPort?: string;
}

/** A node's own containerd (inside its mount namespace): the standard paths. */
export const NODE_CONTAINERD: ContainerdPaths = {
	root: '/var/lib/containerd',
	state: '/run/containerd',
	socket: '/run/containerd/containerd.sock',
	cniBinDir: '/opt/cni/bin',
	cniConfDir: '/etc/cni/net.d',
};

/**
 * containerd's config with the CRI plugin as it works on this machine (also used by
 * the runtime tests' private containerd, with their own paths).
 */
export function containerdConfig(pauseRef: string, p: ContainerdPaths = NODE_CONTAINERD): string {
	return `version = 2
root = "${p.root}"
state = "${p.state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "${p.socket}"

[ttrpc]
  address = "${p.socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "${p.root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pauseRef}"
  stream_server_address = "127.0.0.1"
${p.streamPort === undefined ? '' : `  stream_server_port = "${p.streamPort}"\n`}  enable_selinux = false
  disable_apparmor = true
  # This machine withholds CAP_SYS_RESOURCE, so nothing may lower oom_score_adj below
  # containerd's own (runc init dies with "failed to update /proc/self/oom_score_adj:
  # Permission denied"): clamp containers' values as rootless setups do.
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${p.cniBinDir}"
    conf_dir = "${p.cniConfDir}"
    max_conf_num = 1
`;
}

export interface KubeletConfigInput {
	clusterName: string;
	nodeName: string;
	caFile: string;
	tlsCertFile: string;
	tlsKeyFile: string;
	volumePluginDir: string;
}

export function kubeletConfig(i: KubeletConfigInput): object {
	return {
		apiVersion: 'kubelet.config.k8s.io/v1beta1',
		kind: 'KubeletConfiguration',
		authentication: {
			anonymous: { enabled: false },
			webhook: { enabled: true },
			x509: { clientCAFile: i.caFile },
		},
		authorization: { mode: 'Webhook' },
		address: '0.0.0.0',
		port: 10250,
		readOnlyPort: 0,
		healthzBindAddress: '127.0.0.1',
		healthzPort: 10248,
		tlsCertFile: i.tlsCertFile,
		tlsPrivateKeyFile: i.tlsKeyFile,
		// This machine mounts cgroup v1 controllers (v2 holds none): cgroupfs driver, v1 allowed.
		cgroupDriver: 'cgroupfs',
		cgroupRoot: `/weir-${i.clusterName}/${i.nodeName}`,
		failCgroupV1: false,
		failSwapOn: false,
		containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
		clusterDNS: [DNS_SERVICE_IP],
		clusterDomain: CLUSTER_DOMAIN,
		// No host resolver leaks into pods: dnsPolicy=Default pods get no nameserver.
		resolvConf: '',
		rotateCertificates: false,
		serverTLSBootstrap: false,
		serializeImagePulls: false,
		imageGCHighThresholdPercent: 100,
		imageGCLowThresholdPercent: 99,
		evictionHard: {
			'memory.available': '100Mi',
			'nodefs.available': '1%',
			'nodefs.inodesFree': '1%',
			'imagefs.available': '1%',
		},
		protectKernelDefaults: false,
		shutdownGracePeriod: '0s',
		shutdownGracePeriodCriticalPods: '0s',
		volumePluginDir: i.volumePluginDir,
		syncFrequency: '10s',
		fileCheckFrequency: '10s',
		nodeStatusUpdateFrequency: '4s',
		nodeStatusReportFrequency: '10s',
		maxPods: 110,
		logging: { format: 'text' },
	};
}

export function kubeProxyConfig(kubeconfig: string, nodeName: string): object {
	return {
		apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
		kind: 'KubeProxyConfiguration',
		clientConnection: { kubeconfig },
		mode: 'iptables',
		hostnameOverride: nodeName,
		clusterCIDR: CLUSTER_CIDR,
		bindAddress: '0.0.0.0',
		healthzBindAddress: '127.0.0.1:10256',
		metricsBindAddress: '127.0.0.1:10249',
		// Leave the kernel's (partly global) conntrack settings alone.
		conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
	};
}

/** Debian's reference plugins: bridge + host-local on the node's PodCIDR. */
export function referenceConflist(podCIDR: string): object {
	return {
		cniVersion: '1.0.0',
		name: 'weir-reference',
		plugins: [
			{
				type: 'bridge',
				bridge: 'cni0',
				isGateway: true,
				ipMasq: false,
				hairpinMode: true,
				ipam: {
					type: 'host-local',
					ranges: [[{ subnet: podCIDR }]],
					routes: [{ dst: '0.0.0.0/0' }],
				},
			},
			{ type: 'portmap', capabilities: { portMappings: true } },
		],
	};
}
export const REFERENCE_PLUGINS = ['bridge', 'host-local', 'loopback', 'portmap'];

export function corefile(): string {
	// Serves cluster.local and reverse zones only; there is no `forward`, so nothing
	// ever goes to the machine's real resolvers: other names get REFUSED.
	return `.:53 {
    errors
    health :8080
    ready :8181
    kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {
        pods insecure
        ttl 30
    }
    cache 30
    loop
    reload
    loadbalance
}
`;
}

/**
 * CoreDNS's Deployment, Service and RBAC. `apiServer` (host and port of the API server
 * itself) is for a cluster without kube-proxy: CoreDNS's client would otherwise dial
 * the `kubernetes` Service's ClusterIP, which nothing translates there.
 */
export function coreDnsManifests(image: string, o: { apiServer?: { host: string; port: number } } = {}): object {
	const labels = { 'k8s-app': 'kube-dns' };
	const ns = 'kube-system';
	return {
		apiVersion: 'v1',
		kind: 'List',
		items: [
			{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: ns } },
			{
				apiVersion: 'rbac.authorization.k8s.io/v1',
				kind: 'ClusterRole',
				metadata: { name: 'system:coredns' },
				rules: [
					{ apiGroups: [''], resources: ['endpoints', 'services', 'pods', 'namespaces'], verbs: ['list', 'watch'] },
					{ apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
				],
			},
			{
				apiVersion: 'rbac.authorization.k8s.io/v1',
				kind: 'ClusterRoleBinding',
				metadata: { name: 'system:coredns' },
				roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
				subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: ns }],
			},
			{
				apiVersion: 'v1',
				kind: 'ConfigMap',
				metadata: { name: 'coredns', namespace: ns },
				data: { Corefile: corefile() },
			},
			{
				apiVersion: 'apps/v1',
				kind: 'Deployment',
				metadata: { name: 'coredns', namespace: ns, labels },
				spec: {
					replicas: 1,
					selector: { matchLabels: labels },
					template: {
						metadata: { labels },
						spec: {
							serviceAccountName: 'coredns',
							dnsPolicy: 'Default',
							priorityClassName: 'system-cluster-critical',
							tolerations: [{ operator: 'Exists' }],
							containers: [
								{
									name: 'coredns',
									image,
									imagePullPolicy: 'Never',
									args: ['-conf', '/etc/coredns/Corefile'],
									...(o.apiServer
										? {
												env: [
													{ name: 'KUBERNETES_SERVICE_HOST', value: o.apiServer.host },
													{ name: 'KUBERNETES_SERVICE_PORT', value: String(o.apiServer.port) },
												],
											}
										: {}),
									ports: [
										{ name: 'dns', containerPort: 53, protocol: 'UDP' },
										{ name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
									],
									volumeMounts: [{ name: 'config', mountPath: '/etc/coredns', readOnly: true }],
									readinessProbe: { httpGet: { path: '/ready', port: 8181 }, periodSeconds: 2 },
									livenessProbe: { httpGet: { path: '/health', port: 8080 }, periodSeconds: 10 },
									securityContext: {
										capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] },
										readOnlyRootFilesystem: true,
									},
								},
							],
							volumes: [{ name: 'config', configMap: { name: 'coredns' } }],
						},
					},
				},
			},
			{
				apiVersion: 'v1',
				kind: 'Service',
				metadata: { name: 'kube-dns', namespace: ns, labels },
				spec: {
					clusterIP: DNS_SERVICE_IP,
					selector: labels,
					ports: [
						{ name: 'dns', port: 53, protocol: 'UDP' },
						{ name: 'dns-tcp', port: 53, protocol: 'TCP' },
					],
				},
			},
		],
	};
}
