// Installing Weir on the local cluster exactly as on kind: the agent image is imported
// into every node's containerd (kind: `kind load image-archive`), then
// `kubectl apply -k deploy/`. Shared by the quick-start demo and the cluster tests.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Cluster } from '../cluster/cluster.js';
import { sleep, waitFor, type RunResult } from '../cluster/exec.js';
import { buildAgentImage, type BuiltImage } from '../image/agent-image.js';
import { repoRoot } from '../../src/shared/package.js';

export const DEPLOY_DIR = join(repoRoot, 'deploy');
/** The install for clusters without kube-proxy (its api-server.env is kind's). */
export const DEPLOY_NO_KUBE_PROXY_DIR = join(DEPLOY_DIR, 'no-kube-proxy');
export const WEIR_NS = 'weir-system';

type Log = (m: string) => void;

async function kubectl(c: Cluster, args: string[], o: { input?: string; allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
	return c.kubectl(args, o);
}

/**
 * `kind load image-archive` for the local cluster: the archive streamed into each
 * node's `ctr images import` with kind's own flags (kind's LoadImageArchive), so what
 * works here is what works on kind.
 */
export async function kindLoadImageArchive(c: Cluster, archive: string): Promise<void> {
	for (const n of c.nodes) {
		const r = await c.nodeExec(
			n.name,
			[
				'sh',
				'-c',
				'exec ctr --address /run/containerd/containerd.sock --namespace=k8s.io images import --all-platforms --digests --snapshotter=overlayfs - < "$0"',
				archive,
			],
			{ allowFail: true },
		);
		if (r.code !== 0) throw new Error(`loading ${archive} into ${n.name} as kind does: ${r.stderr.trim()}`);
	}
}

/** Builds (or reuses) the agent image and loads it into every node as kind would. */
export async function loadAgentImage(c: Cluster, log: Log, ref?: string): Promise<BuiltImage> {
	const img = await buildAgentImage({ log, ...(ref ? { ref } : {}) });
	log(`loading ${img.ref} into ${c.nodes.map((n) => n.name).join(', ')} (${(img.bytes / 1e6).toFixed(0)} MB), as kind load image-archive does`);
	await kindLoadImageArchive(c, img.archive);
	return img;
}

/**
 * deploy/no-kube-proxy/ as a user of another cluster than kind's default applies it,
 * with the API server's address in place of api-server.env's: an overlay in `dir`
 * that replaces the weir-api-server ConfigMap. Returns `dir`.
 */
export function noKubeProxyOverlay(dir: string, apiServer: { host: string; port: number }): string {
	mkdirSync(dir, { recursive: true });
	writeFileSync(
		join(dir, 'kustomization.yaml'),
		[
			'apiVersion: kustomize.config.k8s.io/v1beta1',
			'kind: Kustomization',
			`namespace: ${WEIR_NS}`,
			'resources:',
			`  - ${relative(dir, DEPLOY_NO_KUBE_PROXY_DIR)}`,
			'configMapGenerator:',
			'  - name: weir-api-server',
			'    behavior: replace',
			'    literals:',
			`      - KUBERNETES_SERVICE_HOST=${apiServer.host}`,
			`      - KUBERNETES_SERVICE_PORT=${apiServer.port}`,
			'',
		].join('\n'),
	);
	return dir;
}

/** `kubectl apply -k deploy/` (optionally a kustomize overlay directory). */
export async function applyDeploy(c: Cluster, dir = DEPLOY_DIR): Promise<void> {
	await kubectl(c, ['apply', '-k', dir]);
}

/** One line per node: Ready=True/False, for progress. */
export async function nodeReadiness(c: Cluster): Promise<Map<string, boolean>> {
	const r = await kubectl(c, ['get', 'nodes', '-o', 'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'], {
		allowFail: true,
	});
	const m = new Map<string, boolean>();
	for (const l of r.stdout.split('\n').filter(Boolean)) {
		const [n, s] = l.split('=');
		if (n) m.set(n, s === 'True');
	}
	return m;
}

export interface DsStatus {
	desired: number;
	ready: number;
	updated: number;
}

export async function daemonSetStatus(c: Cluster, name = 'weir-agent'): Promise<DsStatus | undefined> {
	const r = await kubectl(c, ['-n', WEIR_NS, 'get', 'ds', name, '-o', 'json'], { allowFail: true });
	if (r.code !== 0) return undefined;
	const s = (JSON.parse(r.stdout) as { status?: Record<string, number> }).status ?? {};
	return { desired: s['desiredNumberScheduled'] ?? 0, ready: s['numberReady'] ?? 0, updated: s['updatedNumberScheduled'] ?? 0 };
}

/** Waits until the DaemonSet is Ready on every node and every node is Ready, printing what changes. */
export async function waitWeirReady(c: Cluster, log: Log, timeoutMs = 180_000): Promise<void> {
	let last = '';
	try {
		await waitFor(
			'Weir agents Ready and nodes Ready',
			timeoutMs,
			async () => {
				const ds = await daemonSetStatus(c);
				const nodes = await nodeReadiness(c);
				const line = `agents ${ds?.ready ?? 0}/${ds?.desired ?? '?'} ready; nodes ${[...nodes].map(([n, r]) => `${n}=${r ? 'Ready' : 'NotReady'}`).join(' ')}`;
				if (line !== last) log(line);
				last = line;
				const ok =
					ds &&
					ds.desired === c.nodes.length &&
					ds.ready === ds.desired &&
					ds.updated === ds.desired &&
					[...nodes.values()].every(Boolean) &&
					nodes.size === c.nodes.length;
				return ok ? true : undefined;
			},
			1000,
		);
	} catch (err) {
		throw new Error(`${(err as Error).message}\n${await agentDiagnostics(c)}`, { cause: err });
	}
}

/** Pod list and the last agent log lines: what an operator would look at. */
export async function agentDiagnostics(c: Cluster): Promise<string> {
	const pods = await kubectl(c, ['get', 'pods', '-A', '-o', 'wide'], { allowFail: true });
	const logs = await kubectl(c, ['-n', WEIR_NS, 'logs', '-l', 'app.kubernetes.io/name=weir-agent', '--all-containers', '--tail=30', '--prefix'], {
		allowFail: true,
	});
	const ev = await kubectl(c, ['-n', WEIR_NS, 'get', 'events', '--sort-by=.lastTimestamp'], { allowFail: true });
	return `pods:\n${pods.stdout}${pods.stderr}\nweir-agent logs:\n${logs.stdout}${logs.stderr}\nevents:\n${ev.stdout.split('\n').slice(-20).join('\n')}`;
}

/** Runs deploy/uninstall.sh against the cluster, as a user would. */
export async function uninstallWeir(c: Cluster, log: Log): Promise<void> {
	await new Promise<void>((resolve, reject) => {
		const child = spawn('bash', [join(DEPLOY_DIR, 'uninstall.sh')], {
			env: { ...process.env, KUBECTL: `${c.bins.kubectl} --kubeconfig ${c.kubeconfig}` },
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		let out = '';
		const onData = (d: Buffer): void => {
			out += d.toString();
			for (const l of d.toString().split('\n')) if (l.trim()) log(l);
		};
		child.stdout.on('data', onData);
		child.stderr.on('data', onData);
		child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`deploy/uninstall.sh failed (exit ${code}):\n${out.slice(-3000)}`))));
	});
}

/** What Weir may have left on a node: attached programs, pins, CNI files, socket dir. */
export async function nodeLeftovers(c: Cluster, node: string): Promise<string[]> {
	const left: string[] = [];
	const net = await c.nodeExec(node, ['bpftool', 'net', 'show'], { allowFail: true });
	for (const l of net.stdout.split('\n')) if (/weir/.test(l)) left.push(`attached: ${l.trim()}`);
	const pins = await c.nodeExec(node, ['sh', '-c', 'ls -A /sys/fs/bpf/weir 2>/dev/null || true']);
	if (pins.stdout.trim()) left.push(`pins: /sys/fs/bpf/weir: ${pins.stdout.trim().replace(/\n/g, ' ')}`);
	const bpffsTop = await c.nodeExec(node, ['sh', '-c', 'ls -A /sys/fs/bpf']);
	if (/weir/.test(bpffsTop.stdout)) left.push(`bpffs: ${bpffsTop.stdout.trim()}`);
	const cni = await c.nodeExec(node, ['sh', '-c', 'ls -A /etc/cni/net.d /opt/cni/bin']);
	for (const l of cni.stdout.split('\n')) if (/weir/.test(l)) left.push(`cni: ${l.trim()}`);
	const run = await c.nodeExec(node, ['sh', '-c', 'ls -A /run/weir 2>/dev/null || true']);
	if (run.stdout.trim()) left.push(`/run/weir: ${run.stdout.trim()}`);
	return left;
}

export { sleep };

/** Waits until weir-controller (the relay and the web UI) is rolled out and ready. */
export async function waitControllerReady(c: Cluster, log: Log, timeoutMs = 180_000): Promise<void> {
	log('weir-controller (the flow relay and the web UI)');
	const r = await kubectl(c, ['-n', WEIR_NS, 'rollout', 'status', 'deployment/weir-controller', `--timeout=${Math.round(timeoutMs / 1000)}s`], {
		allowFail: true,
		timeoutMs: timeoutMs + 10_000,
	});
	if (r.code !== 0) {
		const logs = await kubectl(c, ['-n', WEIR_NS, 'logs', 'deploy/weir-controller', '--tail=30'], { allowFail: true });
		throw new Error(`weir-controller is not ready: ${r.stderr.trim()}\n${logs.stdout}${logs.stderr}\n${await agentDiagnostics(c)}`);
	}
}
