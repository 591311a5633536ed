// The local cluster ("kind without Docker"): upstream Kubernetes components built from
// Go modules, Debian's containerd and runc, images built here. Two modes:
//   control-plane: etcd + kube-apiserver on 127.0.0.1 of the host (fast controller tests)
//   cluster:       two nodes, each a network namespace plus a mount namespace holding
//                  its containerd, kubelet and kube-proxy; the control plane runs in
//                  node 1 (like kind's control-plane node). The nodes sit on a lab bridge
//                  in a third namespace with no route to the machine's uplink; the host
//                  reaches the API server through a unix-socket forwarder on 127.0.0.1.
import { spawn } from 'node:child_process';
import { copyFileSync, chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ClusterError, run, sleep, startDaemon, waitFor, type RunResult } from './exec.js';
import { buildImages, type LocalImages } from './images.js';
import { makeCa, makeCert, makeServiceAccountKeys, writeKubeconfig, type Pki } from './pki.js';
import {
	CGROUP_V1,
	cgroupV2Dir,
	clusterDir,
	listNetns,
	readState,
	recordHostDir,
	teardown,
	v1Hierarchies,
	writeState,
	type ClusterState,
	type TeardownReport,
} from './resources.js';
import { binPaths, missingBuilds, sourceDir, type BinPaths } from './versions.js';
import * as cfg from './configs.js';

export type ClusterMode = 'control-plane' | 'cluster';
/**
 * The CNI the nodes get: Debian's reference bridge + host-local, none (nodes stay
 * NotReady until a DaemonSet installs one), or a directory of conf files plus one of
 * plugin binaries. Conf files may contain __POD_CIDR__, __NODE_IP__, __NODE_NAME__.
 */
export type CniSpec = 'reference' | 'none' | { confDir: string; binDir: string };

export interface ClusterOptions {
	/** Names every resource (netns weir-<name>-*, /var/lib/weir-cluster/<name>). Default 'weir'. */
	name?: string;
	mode?: ClusterMode;
	cni?: CniSpec;
	/**
	 * Run kube-proxy (iptables mode) in each node. Default true. Without it nothing
	 * translates ClusterIPs (unless a CNI replaces kube-proxy): in-cluster clients that
	 * must work regardless (CoreDNS here) are given the API server's own address,
	 * `Cluster.apiServerAddress`, as KUBERNETES_SERVICE_HOST/PORT.
	 */
	kubeProxy?: boolean;
	/** Route each node's PodCIDR via its node IP on the other nodes. Default true. */
	podRoutes?: boolean;
	/** Deploy CoreDNS. Default true in cluster mode. */
	coreDns?: boolean;
	/** Build missing binaries (tens of minutes on a cold cache) instead of failing. Default true. */
	build?: boolean;
	/** Progress lines (default: stderr). */
	log?: (msg: string) => void;
	/** Readiness deadline for start, after binaries and images exist. Default 180 s. */
	timeoutMs?: number;
}

export interface ClusterNode {
	name: string;
	/** Network namespace name (ip netns), e.g. weir-weir-n1. */
	netns: string;
	nodeIP: string;
	/** Filled once the controller-manager allocated it ('' in control-plane mode). */
	podCIDR: string;
	/** A process in the node's mount + network namespaces (nsenter --target). */
	holderPid: number;
	/** Root of the node's private directories (its /etc/cni/net.d, /opt/cni/bin, /var/lib/...). */
	rootDir: string;
}

export interface Cluster {
	name: string;
	mode: ClusterMode;
	dir: string;
	kubeconfig: string;
	/** https://127.0.0.1:<port> as seen from the host. */
	server: string;
	logDir: string;
	/** Whether kube-proxy runs in the nodes (ClusterOptions.kubeProxy). */
	kubeProxy: boolean;
	/**
	 * The API server as pods reach it without a Service: host and port in the lab
	 * (node n1's IP, 6443) in cluster mode, the host's 127.0.0.1 in control-plane mode.
	 */
	apiServerAddress: { host: string; port: number };
	nodes: ClusterNode[];
	bins: BinPaths;
	images: { pause: string; coredns: string; workload: string };
	kubectl(args: readonly string[], opts?: { input?: string; allowFail?: boolean; timeoutMs?: number }): Promise<RunResult>;
	/** Runs a command inside a node's mount and network namespaces. */
	nodeExec(node: string, argv: readonly string[], opts?: { input?: string; allowFail?: boolean }): Promise<RunResult>;
	/** Imports an OCI archive into every node's containerd (k8s.io namespace). */
	importImage(archive: string): Promise<void>;
	stop(opts?: { keepLogs?: boolean }): Promise<TeardownReport>;
	/**
	 * Stops one component the harness started (e.g. 'kube-apiserver'), to test what
	 * survives its absence; `startComponent` runs it again with the same arguments.
	 */
	stopComponent(proc: string): Promise<void>;
	startComponent(proc: string): Promise<void>;
}

const NODE_DIRS = [
	'/etc/cni/net.d',
	'/opt/cni/bin',
	'/var/lib/cni',
	'/var/lib/kubelet',
	'/var/lib/containerd',
	'/run/containerd',
	'/run/netns',
	// The Weir agent's CNI socket directory: per node, as on a real machine.
	'/run/weir',
	'/var/log/pods',
	'/var/log/containers',
];

/** What kubelet's container manager wants in these (global) /proc/sys files. */
const KUBELET_TUNABLES: Record<string, number> = {
	'vm/overcommit_memory': 1,
	'vm/panic_on_oom': 0,
	'kernel/panic': 10,
	'kernel/panic_on_oops': 1,
	'kernel/keys/root_maxkeys': 1000000,
	'kernel/keys/root_maxbytes': 25000000,
};

/** A TCP port on 127.0.0.1 that nobody listens on right now. */
export function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const srv = createServer();
		srv.on('error', reject);
		srv.listen(0, '127.0.0.1', () => {
			const addr = srv.address();
			const port = typeof addr === 'object' && addr ? addr.port : 0;
			srv.close(() => resolve(port));
		});
	});
}

function defaultLog(msg: string): void {
	process.stderr.write(`[cluster] ${msg}\n`);
}

/** Runs build-binaries.sh for `components` (cached ones are skipped there), streaming its progress to `log`. */
export async function buildComponents(components: readonly string[], log: (m: string) => void = defaultLog): Promise<void> {
	await new Promise<void>((resolve, reject) => {
		const child = spawn('bash', [join(sourceDir(), 'build-binaries.sh'), ...components], {
			stdio: ['ignore', 'inherit', 'pipe'],
		});
		let tail = '';
		child.stderr.setEncoding('utf8').on('data', (d: string) => {
			tail = (tail + d).slice(-4000);
			for (const l of d.split('\n')) if (l.trim()) log(l);
		});
		child.on('close', (code) =>
			code === 0 ? resolve() : reject(new ClusterError('WEIR_ERR_CLUSTER_BUILD', `build-binaries.sh failed (exit ${code}):\n${tail}`)),
		);
	});
}

/** Builds what is missing (binaries, images), streaming build progress to `log`. */
export async function ensureBuilt(log: (m: string) => void = defaultLog): Promise<LocalImages> {
	const missing = missingBuilds();
	if (missing.length > 0) {
		log(`building ${missing.join(', ')} from upstream Go modules (first run only; progress follows)`);
		const t0 = Date.now();
		await buildComponents(missing, log);
		log(`binaries built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
	}
	return buildImages(log);
}

interface Ctx {
	/** how each component was started, for startComponent() */
	argv?: Map<string, { group: string; argv: readonly string[] }>;
	name: string;
	state: ClusterState;
	bins: BinPaths;
	log: (m: string) => void;
	pki: Pki;
	logDir: string;
}

function spawnIn(ctx: Ctx, proc: string, group: string, argv: readonly string[]): number {
	(ctx.argv ??= new Map()).set(proc, { group, argv });
	const cg = cgroupV2Dir(ctx.name, group);
	mkdirSync(cg, { recursive: true });
	const pid = startDaemon({ argv, logFile: join(ctx.logDir, `${proc}.log`), cgroupDir: cg });
	ctx.state.processes.push({ name: proc, pid, group });
	writeState(ctx.state);
	return pid;
}

function nsenter(holderPid: number): string[] {
	return ['nsenter', `--target=${holderPid}`, '--mount', '--net', '--'];
}

/** Runs a command to completion inside a node's mount and network namespaces. */
function inNode(holderPid: number, argv: readonly string[], o: { input?: string; allowFail?: boolean } = {}): Promise<RunResult> {
	return run('nsenter', [...nsenter(holderPid).slice(1), ...argv], o);
}

async function checkHealthy(ctx: Ctx, proc: string): Promise<void> {
	const rec = ctx.state.processes.find((p) => p.name === proc);
	if (!rec) return;
	try {
		process.kill(rec.pid, 0);
	} catch {
		let tail = '';
		try {
			tail = readFileSync(join(ctx.logDir, `${proc}.log`), 'utf8')
				.split('\n')
				.slice(-25)
				.join('\n');
		} catch {
			/* no log */
		}
		throw new ClusterError('WEIR_ERR_CLUSTER_PROCESS', `${proc} (pid ${rec.pid}) exited; last log lines:\n${tail}`);
	}
}

async function makePki(ctx: Ctx, apiserverIPs: string[], nodes: { name: string; ip: string }[]): Promise<void> {
	const pki = ctx.pki;
	await makeCert(pki, {
		name: 'apiserver',
		cn: 'kube-apiserver',
		server: true,
		dns: ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', `kubernetes.default.svc.${cfg.CLUSTER_DOMAIN}`, 'localhost'],
		ips: apiserverIPs,
	});
	await makeCert(pki, { name: 'apiserver-kubelet-client', cn: 'kube-apiserver-kubelet-client', org: 'system:masters' });
	await makeCert(pki, { name: 'admin', cn: 'kubernetes-admin', org: 'system:masters' });
	await makeCert(pki, { name: 'controller-manager', cn: 'system:kube-controller-manager' });
	await makeCert(pki, { name: 'scheduler', cn: 'system:kube-scheduler' });
	await makeCert(pki, { name: 'kube-proxy', cn: 'system:kube-proxy' });
	for (const n of nodes) {
		await makeCert(pki, { name: `kubelet-${n.name}`, cn: `system:node:${n.name}`, org: 'system:nodes' });
		await makeCert(pki, { name: `kubelet-serving-${n.name}`, cn: n.name, server: true, dns: [n.name], ips: [n.ip] });
	}
}

function etcdArgv(ctx: Ctx, clientPort: number, peerPort: number): string[] {
	const url = (p: number): string => `http://127.0.0.1:${p}`;
	return [
		ctx.bins.etcd,
		'--name=weir',
		`--data-dir=${join(ctx.state.dir, 'etcd')}`,
		`--listen-client-urls=${url(clientPort)}`,
		`--advertise-client-urls=${url(clientPort)}`,
		`--listen-peer-urls=${url(peerPort)}`,
		`--initial-advertise-peer-urls=${url(peerPort)}`,
		`--initial-cluster=weir=${url(peerPort)}`,
		'--initial-cluster-state=new',
		'--unsafe-no-fsync',
		'--log-level=warn',
	];
}

function apiserverArgv(ctx: Ctx, o: { etcdPort: number; bind: string; port: number; advertise: string; nodeAuthz: boolean }): string[] {
	const p = ctx.pki;
	return [
		ctx.bins.kubeApiserver,
		`--etcd-servers=http://127.0.0.1:${o.etcdPort}`,
		`--bind-address=${o.bind}`,
		`--secure-port=${o.port}`,
		`--advertise-address=${o.advertise}`,
		...(o.advertise.startsWith('127.') ? ['--endpoint-reconciler-type=none'] : []),
		`--service-cluster-ip-range=${cfg.SERVICE_CIDR}`,
		`--tls-cert-file=${p.crt('apiserver')}`,
		`--tls-private-key-file=${p.key('apiserver')}`,
		`--client-ca-file=${p.caCrt}`,
		`--kubelet-client-certificate=${p.crt('apiserver-kubelet-client')}`,
		`--kubelet-client-key=${p.key('apiserver-kubelet-client')}`,
		'--kubelet-preferred-address-types=InternalIP',
		`--service-account-issuer=https://kubernetes.default.svc.${cfg.CLUSTER_DOMAIN}`,
		`--service-account-key-file=${join(p.dir, 'sa.pub')}`,
		`--service-account-signing-key-file=${join(p.dir, 'sa.key')}`,
		`--authorization-mode=${o.nodeAuthz ? 'Node,RBAC' : 'RBAC'}`,
		'--enable-admission-plugins=NodeRestriction',
		'--allow-privileged=true',
		'--profiling=false',
		'--v=1',
	];
}

/** Starts a cluster and waits until it is ready. A previous run of the same name is cleaned first. */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
	const name = opts.name ?? 'weir';
	if (!/^[a-z][a-z0-9]{0,11}$/.test(name)) {
		throw new ClusterError('WEIR_ERR_CLUSTER_NAME', `cluster name must be 1-12 lowercase letters/digits, got "${name}"`);
	}
	const mode = opts.mode ?? 'cluster';
	const log = opts.log ?? defaultLog;
	const cni = opts.cni ?? 'reference';
	const timeoutMs = opts.timeoutMs ?? 180_000;
	if (process.getuid?.() !== 0) {
		throw new ClusterError('WEIR_ERR_CLUSTER_ROOT', 'the local cluster needs root (namespaces, cgroups, mounts)');
	}

	if (typeof cni === 'object') {
		for (const d of [cni.confDir, cni.binDir]) {
			if (!existsSync(d)) throw new ClusterError('WEIR_ERR_CLUSTER_CNI', `CNI directory ${d} does not exist`);
		}
	}
	const images = await ensureBuilt(log);
	const bins = binPaths();
	const t0 = Date.now();
	if (readState(name) || (await listNetns()).some((n) => n.startsWith(`weir-${name}-`))) {
		log(`cleaning up a previous run of cluster "${name}"`);
		const rep = await teardown(name);
		if (rep.left.length) throw new ClusterError('WEIR_ERR_CLUSTER_CLEANUP', `cannot clean previous run: ${rep.left.join('; ')}`);
	}
	const dir = clusterDir(name);
	const logDir = join(dir, 'logs');
	mkdirSync(logDir, { recursive: true });
	const state: ClusterState = {
		name,
		mode,
		dir,
		kubeconfig: join(dir, 'admin.kubeconfig'),
		logDir,
		server: '',
		startedAt: new Date().toISOString(),
		ready: false,
		processes: [],
		nodes: [],
	};
	writeState(state);
	const pki = await makeCa(join(dir, 'pki'));
	await makeServiceAccountKeys(pki);
	const ctx: Ctx = { name, state, bins, log, pki, logDir };

	try {
		const cluster = mode === 'control-plane' ? await startControlPlane(ctx, images) : await startFull(ctx, images, { ...opts, cni, timeoutMs });
		state.ready = true;
		writeState(state);
		log(`ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
		log(`kubeconfig: ${state.kubeconfig}`);
		log(`logs:       ${logDir}`);
		return cluster;
	} catch (err) {
		log(`start failed; logs kept in ${logDir}; cleaning up`);
		await teardown(name, { keepLogs: true });
		throw err;
	}
}

function makeCluster(
	ctx: Ctx,
	images: LocalImages,
	nodes: ClusterNode[],
	net: { kubeProxy: boolean; apiServerAddress: { host: string; port: number } },
): Cluster {
	const { state, bins } = ctx;
	const nodeExec: Cluster['nodeExec'] = (node, argv, o = {}) => {
		const n = nodes.find((x) => x.name === node);
		if (!n) throw new ClusterError('WEIR_ERR_CLUSTER_NODE', `no node ${node}`);
		return inNode(n.holderPid, argv, o);
	};
	return {
		name: ctx.name,
		mode: state.mode,
		dir: state.dir,
		kubeconfig: state.kubeconfig,
		server: state.server,
		logDir: state.logDir,
		kubeProxy: net.kubeProxy,
		apiServerAddress: net.apiServerAddress,
		nodes,
		bins,
		images: { pause: images.pause, coredns: images.coredns, workload: images.workload },
		kubectl: (args, o = {}) => run(bins.kubectl, ['--kubeconfig', state.kubeconfig, ...args], o),
		nodeExec,
		async importImage(archive) {
			for (const n of nodes) {
				await nodeExec(n.name, ['ctr', '--address', '/run/containerd/containerd.sock', '-n', 'k8s.io', 'images', 'import', archive]);
			}
		},
		stop: (o = {}) => stopCluster(ctx.name, o),
		async stopComponent(proc) {
			const rec = state.processes.find((p) => p.name === proc);
			if (!rec) throw new ClusterError('WEIR_ERR_CLUSTER_NODE', `no component ${proc}`);
			try {
				// SIGKILL: an API server that vanishes, not one that drains politely.
				process.kill(rec.pid, 'SIGKILL');
			} catch {
				return; // already gone
			}
			await waitFor(
				`${proc} to exit`,
				15_000,
				async () => {
					try {
						process.kill(rec.pid, 0);
						return undefined;
					} catch {
						return true;
					}
				},
				100,
			);
		},
		async startComponent(proc) {
			const spec = ctx.argv?.get(proc);
			if (!spec) throw new ClusterError('WEIR_ERR_CLUSTER_NODE', `no component ${proc}`);
			state.processes = state.processes.filter((p) => p.name !== proc);
			spawnIn(ctx, proc, spec.group, spec.argv);
			if (proc === 'kube-apiserver') await waitApiserver(ctx, 60_000);
		},
	};
}

async function waitApiserver(ctx: Ctx, timeoutMs: number): Promise<void> {
	await waitFor(
		'kube-apiserver /readyz',
		timeoutMs,
		async () => {
			await checkHealthy(ctx, 'etcd');
			await checkHealthy(ctx, 'kube-apiserver');
			const r = await run(ctx.bins.kubectl, ['--kubeconfig', ctx.state.kubeconfig, 'get', '--raw', '/readyz'], {
				allowFail: true,
				timeoutMs: 5000,
			});
			return r.code === 0 && r.stdout.trim() === 'ok' ? true : undefined;
		},
		200,
	);
}

async function startControlPlane(ctx: Ctx, images: LocalImages): Promise<Cluster> {
	const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
	await makePki(ctx, ['127.0.0.1'], []);
	ctx.state.server = `https://127.0.0.1:${apiPort}`;
	writeKubeconfig(ctx.state.kubeconfig, ctx.state.server, ctx.pki, 'admin', 'kubernetes-admin');
	writeState(ctx.state);
	spawnIn(ctx, 'etcd', 'control', etcdArgv(ctx, etcdPort, peerPort));
	spawnIn(
		ctx,
		'kube-apiserver',
		'control',
		apiserverArgv(ctx, {
			etcdPort,
			bind: '127.0.0.1',
			port: apiPort,
			advertise: '127.0.0.1',
			nodeAuthz: false,
		}),
	);
	await waitApiserver(ctx, 60_000);
	return makeCluster(ctx, images, [], { kubeProxy: false, apiServerAddress: { host: '127.0.0.1', port: apiPort } });
}

async function ip(args: string[]): Promise<void> {
	await run('ip', args);
}

async function setupNetwork(ctx: Ctx, count: number): Promise<{ name: string; netns: string; ip: string }[]> {
	const lab = `weir-${ctx.name}-lab`;
	await ip(['netns', 'add', lab]);
	await ip(['-n', lab, 'link', 'set', 'lo', 'up']);
	await ip(['-n', lab, 'link', 'add', 'br0', 'type', 'bridge']);
	await ip(['-n', lab, 'addr', 'add', `${cfg.LAB_GATEWAY}/${cfg.LAB_PREFIX}`, 'dev', 'br0']);
	await ip(['-n', lab, 'link', 'set', 'br0', 'up']);
	// The lab namespace forwards nothing: a node's default route ends here.
	await run('nsenter', [`--net=/run/netns/${lab}`, 'sysctl', '-qw', 'net.ipv4.ip_forward=0']);
	const out: { name: string; netns: string; ip: string }[] = [];
	for (let i = 0; i < count; i++) {
		const name = `n${i + 1}`;
		const ns = `weir-${ctx.name}-${name}`;
		const nodeIP = cfg.nodeIPFor(i);
		await ip(['netns', 'add', ns]);
		await ip(['-n', lab, 'link', 'add', name, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
		await ip(['-n', lab, 'link', 'set', name, 'master', 'br0', 'up']);
		await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
		await ip(['-n', ns, 'addr', 'add', `${nodeIP}/${cfg.LAB_PREFIX}`, 'dev', 'eth0']);
		await ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
		await ip(['-n', ns, 'route', 'add', 'default', 'via', cfg.LAB_GATEWAY]);
		await run('nsenter', [
			`--net=/run/netns/${ns}`,
			'sysctl',
			'-qw',
			'net.ipv4.ip_forward=1',
			'net.bridge.bridge-nf-call-iptables=1',
			'net.bridge.bridge-nf-call-ip6tables=1',
		]);
		out.push({ name, netns: ns, ip: nodeIP });
	}
	return out;
}

/** A process holding the node's mount namespace, with the node's own directories mounted. */
async function startNodeHolder(ctx: Ctx, node: { name: string; netns: string }): Promise<{ pid: number; rootDir: string }> {
	const rootDir = join(ctx.state.dir, 'nodes', node.name, 'root');
	for (const d of NODE_DIRS) {
		mkdirSync(join(rootDir, d), { recursive: true });
		// Mount points must exist on the host; remember those we create so stop removes them.
		let p = '';
		for (const part of d.split('/').filter(Boolean)) {
			p += `/${part}`;
			if (!existsSync(p)) {
				mkdirSync(p);
				recordHostDir(p);
			}
		}
	}
	const ready = join(rootDir, '.mounted');
	// kubelet sets these host-global kernel tunables unless they already hold its values
	// (protectKernelDefaults=true would refuse to start instead). The node's mount
	// namespace shows it files holding those values, so the host's settings stay as they are.
	const sysctlDir = join(rootDir, 'kubelet-sysctls');
	mkdirSync(sysctlDir, { recursive: true });
	const tunables: string[] = [];
	for (const [path, value] of Object.entries(KUBELET_TUNABLES)) {
		const f = join(sysctlDir, path.replaceAll('/', '.'));
		writeFileSync(f, `${value}\n`);
		tunables.push(`mount --bind "${f}" "/proc/sys/${path}"`);
	}
	const script = [
		'set -e',
		'mount --make-rshared /',
		...NODE_DIRS.map((d) => `mount --bind "$0${d}" "${d}"`),
		...tunables,
		// A bpffs of the node's own, so pinned maps are per node like on a real machine.
		'mount -t bpf bpf /sys/fs/bpf',
		`touch "$0/.mounted"`,
		'exec sleep infinity',
	].join('\n');
	const pid = spawnIn(ctx, `holder-${node.name}`, node.name, [
		'nsenter',
		`--net=/run/netns/${node.netns}`,
		'--',
		'unshare',
		'--mount',
		'--propagation',
		'slave',
		'--',
		'/bin/sh',
		'-c',
		script,
		rootDir,
	]);
	await waitFor(
		`node ${node.name} mount namespace`,
		10_000,
		async () => {
			await checkHealthy(ctx, `holder-${node.name}`);
			return existsSync(ready) ? true : undefined;
		},
		50,
	);
	return { pid, rootDir };
}

function prepareV1Cgroups(clusterName: string, node: string): void {
	for (const h of v1Hierarchies()) {
		for (const rel of [`weir-${clusterName}`, `weir-${clusterName}/${node}`]) {
			const d = join(h, rel);
			if (!existsSync(d)) mkdirSync(d);
			if (h === join(CGROUP_V1, 'cpuset')) {
				const parent = join(d, '..');
				for (const f of ['cpuset.cpus', 'cpuset.mems']) {
					const cur = readFileSync(join(d, f), 'utf8').trim();
					if (cur === '') writeFileSync(join(d, f), readFileSync(join(parent, f), 'utf8').trim());
				}
			}
		}
	}
}

function installCni(node: ClusterNode, cni: CniSpec): void {
	const binDir = join(node.rootDir, 'opt/cni/bin');
	const confDir = join(node.rootDir, 'etc/cni/net.d');
	const copyBin = (src: string, name: string): void => {
		copyFileSync(src, join(binDir, name));
		chmodSync(join(binDir, name), 0o755);
	};
	// containerd brings up each pod's lo with the loopback plugin, whatever the CNI.
	copyBin('/usr/lib/cni/loopback', 'loopback');
	if (cni === 'none') return;
	if (cni === 'reference') {
		for (const p of cfg.REFERENCE_PLUGINS) copyBin(join('/usr/lib/cni', p), p);
		writeFileSync(join(confDir, '10-weir-reference.conflist'), JSON.stringify(cfg.referenceConflist(node.podCIDR), null, 2));
		return;
	}
	for (const f of readdirSync(cni.binDir)) copyBin(join(cni.binDir, f), f);
	for (const f of readdirSync(cni.confDir)) {
		const text = readFileSync(join(cni.confDir, f), 'utf8')
			.replaceAll('__POD_CIDR__', node.podCIDR)
			.replaceAll('__NODE_IP__', node.nodeIP)
			.replaceAll('__NODE_NAME__', node.name);
		writeFileSync(join(confDir, f), text);
	}
}

async function startFull(ctx: Ctx, images: LocalImages, o: ClusterOptions & { cni: CniSpec; timeoutMs: number }): Promise<Cluster> {
	const { state, bins, log, pki } = ctx;
	const deadline = Date.now() + o.timeoutMs;
	const left = (): number => Math.max(1000, deadline - Date.now());

	log('creating lab network and node namespaces');
	const net = await setupNetwork(ctx, 2);
	const cp = net[0]!;
	await makePki(
		ctx,
		['127.0.0.1', cp.ip, cfg.KUBERNETES_SERVICE_IP],
		net.map((n) => ({ name: n.name, ip: n.ip })),
	);
	const hostPort = await freePort();
	state.server = `https://127.0.0.1:${hostPort}`;
	writeKubeconfig(state.kubeconfig, state.server, pki, 'admin', 'kubernetes-admin');
	const inCluster = `https://${cp.ip}:${cfg.APISERVER_PORT}`;
	const kc = (file: string, cert: string, user: string): string => {
		const f = join(pki.dir, `${file}.kubeconfig`);
		writeKubeconfig(f, inCluster, pki, cert, user);
		return f;
	};

	const nodes: ClusterNode[] = [];
	for (const n of net) {
		const h = await startNodeHolder(ctx, n);
		prepareV1Cgroups(ctx.name, n.name);
		nodes.push({ name: n.name, netns: n.netns, nodeIP: n.ip, podCIDR: '', holderPid: h.pid, rootDir: h.rootDir });
		state.nodes.push({ name: n.name, netns: n.netns, nodeIP: n.ip, podCIDR: '', holderPid: h.pid });
		writeState(state);
	}
	const cpNode = nodes[0]!;

	log('starting etcd, kube-apiserver, controller-manager, scheduler in node n1');
	spawnIn(ctx, 'etcd', 'control', [...nsenter(cpNode.holderPid), ...etcdArgv(ctx, 2379, 2380)]);
	spawnIn(ctx, 'kube-apiserver', 'control', [
		...nsenter(cpNode.holderPid),
		...apiserverArgv(ctx, { etcdPort: 2379, bind: '0.0.0.0', port: cfg.APISERVER_PORT, advertise: cp.ip, nodeAuthz: true }),
	]);
	// Host 127.0.0.1:<port> -> unix socket -> n1's 127.0.0.1:6443. Nothing on the host
	// routes into the lab.
	const sock = join(state.dir, 'apiserver.sock');
	spawnIn(ctx, 'forward-n1', 'control', [
		'nsenter',
		`--net=/run/netns/${cp.netns}`,
		'--',
		'socat',
		`UNIX-LISTEN:${sock},fork,unlink-early,mode=600`,
		`TCP:127.0.0.1:${cfg.APISERVER_PORT}`,
	]);
	spawnIn(ctx, 'forward-host', 'control', ['socat', `TCP-LISTEN:${hostPort},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${sock}`]);
	for (const n of nodes) {
		writeFileSync(join(state.dir, `containerd-${n.name}.toml`), cfg.containerdConfig(images.pause));
		spawnIn(ctx, `containerd-${n.name}`, n.name, [...nsenter(n.holderPid), 'containerd', '--config', join(state.dir, `containerd-${n.name}.toml`)]);
	}
	await waitApiserver(ctx, left());
	spawnIn(ctx, 'kube-controller-manager', 'control', [
		...nsenter(cpNode.holderPid),
		bins.kubeControllerManager,
		`--kubeconfig=${kc('controller-manager', 'controller-manager', 'system:kube-controller-manager')}`,
		`--authentication-kubeconfig=${join(pki.dir, 'controller-manager.kubeconfig')}`,
		`--authorization-kubeconfig=${join(pki.dir, 'controller-manager.kubeconfig')}`,
		'--bind-address=127.0.0.1',
		'--leader-elect=false',
		'--allocate-node-cidrs=true',
		`--cluster-cidr=${cfg.CLUSTER_CIDR}`,
		'--node-cidr-mask-size=24',
		`--service-cluster-ip-range=${cfg.SERVICE_CIDR}`,
		`--cluster-signing-cert-file=${pki.caCrt}`,
		`--cluster-signing-key-file=${pki.caKey}`,
		`--root-ca-file=${pki.caCrt}`,
		`--service-account-private-key-file=${join(pki.dir, 'sa.key')}`,
		'--use-service-account-credentials=true',
		'--controllers=*,bootstrapsigner,tokencleaner',
		'--configure-cloud-routes=false',
		// Its default (/usr/libexec/kubernetes/...) would be created on the host.
		`--flex-volume-plugin-dir=${join(cpNode.rootDir, 'volume-plugins')}`,
		'--v=1',
	]);
	spawnIn(ctx, 'kube-scheduler', 'control', [
		...nsenter(cpNode.holderPid),
		bins.kubeScheduler,
		`--kubeconfig=${kc('scheduler', 'scheduler', 'system:kube-scheduler')}`,
		`--authentication-kubeconfig=${join(pki.dir, 'scheduler.kubeconfig')}`,
		`--authorization-kubeconfig=${join(pki.dir, 'scheduler.kubeconfig')}`,
		'--bind-address=127.0.0.1',
		'--leader-elect=false',
		'--v=1',
	]);

	log("importing images into each node's containerd");
	for (const n of nodes) {
		const ctr = (...args: string[]): Promise<RunResult> =>
			inNode(n.holderPid, ['ctr', '--address', '/run/containerd/containerd.sock', ...args], { allowFail: true });
		await waitFor(
			`containerd in ${n.name}`,
			left(),
			async () => {
				await checkHealthy(ctx, `containerd-${n.name}`);
				return (await ctr('version')).code === 0 ? true : undefined;
			},
			100,
		);
		for (const archive of images.archives.values()) {
			const r = await ctr('-n', 'k8s.io', 'images', 'import', archive);
			if (r.code !== 0) throw new ClusterError('WEIR_ERR_CLUSTER_IMAGE', `import ${archive} into ${n.name}: ${r.stderr.trim()}`);
		}
	}

	log('starting kubelets');
	const proxyKc = kc('kube-proxy', 'kube-proxy', 'system:kube-proxy');
	for (const n of nodes) {
		installCni(n, 'none'); // loopback only until the PodCIDR is known
		const conf = join(state.dir, `kubelet-${n.name}.json`);
		writeFileSync(
			conf,
			JSON.stringify(
				cfg.kubeletConfig({
					clusterName: ctx.name,
					nodeName: n.name,
					caFile: pki.caCrt,
					tlsCertFile: pki.crt(`kubelet-serving-${n.name}`),
					tlsKeyFile: pki.key(`kubelet-serving-${n.name}`),
					volumePluginDir: join(n.rootDir, 'volume-plugins'),
				}),
				null,
				2,
			),
		);
		spawnIn(ctx, `kubelet-${n.name}`, n.name, [
			...nsenter(n.holderPid),
			bins.kubelet,
			`--config=${conf}`,
			`--kubeconfig=${kc(`kubelet-${n.name}`, `kubelet-${n.name}`, `system:node:${n.name}`)}`,
			`--hostname-override=${n.name}`,
			`--node-ip=${n.nodeIP}`,
			'--v=1',
		]);
	}

	log('waiting for nodes to register and get a PodCIDR');
	for (const n of nodes) {
		n.podCIDR = await waitFor(
			`node ${n.name} PodCIDR`,
			left(),
			async () => {
				await checkHealthy(ctx, `kubelet-${n.name}`);
				const r = await run(bins.kubectl, ['--kubeconfig', state.kubeconfig, 'get', 'node', n.name, '-o', 'jsonpath={.spec.podCIDR}'], {
					allowFail: true,
				});
				return r.code === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
			},
			300,
		);
		const sn = state.nodes.find((x) => x.name === n.name);
		if (sn) sn.podCIDR = n.podCIDR;
	}
	writeState(state);
	if (o.podRoutes ?? true) {
		for (const a of nodes) {
			for (const b of nodes) {
				if (a !== b) await ip(['-n', a.netns, 'route', 'replace', b.podCIDR, 'via', b.nodeIP]);
			}
		}
	}
	for (const n of nodes) installCni(n, o.cni);
	const kubeProxy = o.kubeProxy ?? true;
	const netInfo = { kubeProxy, apiServerAddress: { host: cp.ip, port: cfg.APISERVER_PORT } };
	if (kubeProxy) {
		for (const n of nodes) {
			const conf = join(state.dir, `kube-proxy-${n.name}.json`);
			writeFileSync(conf, JSON.stringify(cfg.kubeProxyConfig(proxyKc, n.name), null, 2));
			spawnIn(ctx, `kube-proxy-${n.name}`, n.name, [...nsenter(n.holderPid), bins.kubeProxy, `--config=${conf}`, '--v=1']);
		}
	}
	if (o.cni === 'none') {
		log('cni: none — nodes stay NotReady until a CNI is installed');
		return makeCluster(ctx, images, nodes, netInfo);
	}
	log('waiting for nodes Ready');
	await waitFor(
		'all nodes Ready',
		left(),
		async () => {
			for (const n of nodes) await checkHealthy(ctx, `kubelet-${n.name}`);
			const r = await run(
				bins.kubectl,
				[
					'--kubeconfig',
					state.kubeconfig,
					'get',
					'nodes',
					'-o',
					'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
				],
				{ allowFail: true },
			);
			const ready = r.stdout.split('\n').filter((l) => l.endsWith('=True')).length;
			return ready === nodes.length ? true : undefined;
		},
		500,
	);
	if (o.coreDns ?? true) {
		log('deploying CoreDNS');
		await run(bins.kubectl, ['--kubeconfig', state.kubeconfig, 'apply', '-f', '-'], {
			input: JSON.stringify(cfg.coreDnsManifests(images.coredns, kubeProxy ? {} : { apiServer: netInfo.apiServerAddress })),
		});
		await waitFor(
			'CoreDNS ready',
			left(),
			async () => {
				const r = await run(
					bins.kubectl,
					['--kubeconfig', state.kubeconfig, '-n', 'kube-system', 'get', 'deploy', 'coredns', '-o', 'jsonpath={.status.readyReplicas}'],
					{ allowFail: true },
				);
				return r.stdout.trim() === '1' ? true : undefined;
			},
			500,
		);
	}
	return makeCluster(ctx, images, nodes, netInfo);
}

/** Stops cluster `name` (running, half-started or crashed) and removes everything it made. */
export async function stopCluster(name = 'weir', opts: { keepLogs?: boolean } = {}): Promise<TeardownReport> {
	const rep = await teardown(name, opts);
	// A second pass catches anything that raced with the first (a shim mid-fork).
	if (rep.left.length > 0) {
		await sleep(500);
		const again = await teardown(name, opts);
		return { killed: rep.killed + again.killed, left: again.left };
	}
	return rep;
}

export interface ClusterStatus {
	name: string;
	running: boolean;
	state?: ClusterState;
	processes: { name: string; pid: number; alive: boolean }[];
}

export function clusterStatus(name = 'weir'): ClusterStatus {
	const state = readState(name);
	const processes = (state?.processes ?? []).map((p) => {
		let alive = true;
		try {
			process.kill(p.pid, 0);
		} catch {
			alive = false;
		}
		return { name: p.name, pid: p.pid, alive };
	});
	return { name, running: processes.length > 0 && processes.every((p) => p.alive), ...(state ? { state } : {}), processes };
}
