// Shared by the cluster tests of ClusterIP Services (test/cluster/services*.test.ts):
// Weir installed from deploy/ with or without kube-proxy, pods found by label, shell
// commands run in pods, the node agents' socket load balancer map read from each
// node's bpffs, and the agents' health (restarts, error logs).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterStatus, type Cluster } from '../../hack/cluster/cluster.js';
import { coreDnsManifests } from '../../hack/cluster/configs.js';
import { waitFor } from '../../hack/cluster/exec.js';
import { applyDeploy, loadAgentImage, noKubeProxyOverlay, waitWeirReady, WEIR_NS } from '../../hack/demo/install.js';
import { IPPROTO, decodeLb4Key, decodeLb4Service } from '../../src/kernel/codecs.js';
import { MapName } from '../../src/kernel/layout.js';
import { DEFAULTS } from '../../src/shared/defaults.js';

export interface PodInfo {
	pod: string;
	ip: string;
	node: string;
}

interface PodList {
	items: Array<{
		metadata: { name: string; deletionTimestamp?: string };
		spec: { nodeName?: string };
		status: { podIP?: string; conditions?: Array<{ type: string; status: string }> };
	}>;
}

/** The pods labelled app=<app> in `ns` that are Ready and not being deleted, by name. */
export async function readyPods(k: Cluster, ns: string, app: string): Promise<PodInfo[]> {
	const r = await k.kubectl(['-n', ns, 'get', 'pods', '-l', `app=${app}`, '-o', 'json'], { allowFail: true });
	if (r.code !== 0) return [];
	return (JSON.parse(r.stdout) as PodList).items
		.filter((i) => !i.metadata.deletionTimestamp && i.status.podIP && i.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
		.map((i) => ({ pod: i.metadata.name, ip: i.status.podIP!, node: i.spec.nodeName ?? '' }))
		.sort((a, b) => a.pod.localeCompare(b.pod));
}

/** Waits for at least `count` Ready pods labelled app=<app>; returns them all. */
export async function waitPods(k: Cluster, ns: string, app: string, count: number, timeoutMs = 180_000): Promise<PodInfo[]> {
	return waitFor(
		`${count} × ${ns}/${app} Ready`,
		timeoutMs,
		async () => {
			const p = await readyPods(k, ns, app);
			return p.length >= count ? p : undefined;
		},
		1000,
	);
}

/** One Ready pod labelled app=<app>. */
export async function podOf(k: Cluster, ns: string, app: string): Promise<PodInfo> {
	return (await waitPods(k, ns, app, 1))[0]!;
}

/**
 * An HTTP GET by Service name. The workload image's wget is a static busybox whose libc
 * resolver crashes on names (and whose -T crashes too: `timeout` bounds it instead), so
 * busybox's own nslookup resolves (UDP to the kube-dns ClusterIP from resolv.conf) and
 * wget connects to the ClusterIP it answered.
 */
export function getByName(host: string, timeoutSec: number): string {
	return `ip=$(nslookup ${host} | awk '/^Address:/{a=$2} END{print a}'); echo "resolved ${host} to $ip"; timeout ${timeoutSec} wget -O - "http://$ip:8080/" 2>&1`;
}

/** Runs a shell command in a pod; the exit code and what it printed. */
export async function inPod(k: Cluster, ns: string, pod: string, cmd: string, timeoutMs = 30_000): Promise<{ code: number; out: string }> {
	const r = await k.kubectl(['-n', ns, 'exec', pod, '--', 'sh', '-c', cmd], { allowFail: true, timeoutMs });
	return { code: r.code, out: `${r.stdout}${r.stderr}`.trim() };
}

/** The API server as pods reach it: the `kubernetes` Service's endpoint. */
export async function apiServerEndpoint(k: Cluster): Promise<{ ip: string; port: number }> {
	const r = await k.kubectl(['get', 'endpointslices', '-n', 'default', '-l', 'kubernetes.io/service-name=kubernetes', '-o', 'json']);
	const s = (JSON.parse(r.stdout) as { items: Array<{ endpoints: Array<{ addresses: string[] }>; ports: Array<{ port: number }> }> }).items[0]!;
	return { ip: s.endpoints[0]!.addresses[0]!, port: s.ports[0]!.port };
}

/** The cluster's own processes and every node's iptables show no kube-proxy. */
export async function assertNoKubeProxy(k: Cluster): Promise<void> {
	assert.equal(k.kubeProxy, false);
	assert.deepEqual(
		clusterStatus(k.name).processes.filter((p) => p.name.startsWith('kube-proxy')),
		[],
		'the harness started no kube-proxy',
	);
	for (const n of k.nodes) {
		// kube-proxy would have made its chains in the node; kubelet's canary shows the rules are the node's.
		const ipt = await k.nodeExec(n.name, ['iptables-save']);
		assert.match(ipt.stdout, /KUBE-KUBELET-CANARY/);
		assert.doesNotMatch(ipt.stdout, /KUBE-SERVICES|KUBE-SVC-/, `${n.name}: no kube-proxy chain`);
	}
}

/**
 * Weir from deploy/ (the agent image loaded as kind does, `kubectl apply -k`), agents
 * and nodes Ready, then CoreDNS: a cluster started with no CNI has none, and it comes
 * up on Weir, through the `kubernetes` Service the socket load balancer translates.
 */
export async function installWeir(k: Cluster, log: (m: string) => void): Promise<void> {
	await loadAgentImage(k, log);
	if (k.kubeProxy) await applyDeploy(k);
	else {
		// With nothing to translate the kubernetes Service before Weir runs, the agent is
		// told where the API server is (Cilium's k8sServiceHost): deploy/no-kube-proxy/,
		// with this cluster's address in place of kind's, as its api-server.env says.
		const api = await apiServerEndpoint(k);
		const dir = mkdtempSync(join(tmpdir(), 'weir-no-kube-proxy-'));
		try {
			await applyDeploy(k, noKubeProxyOverlay(dir, { host: api.ip, port: api.port }));
		} finally {
			rmSync(dir, { recursive: true, force: true });
		}
		const env = await k.kubectl([
			'-n',
			WEIR_NS,
			'get',
			'daemonset/weir-agent',
			'-o',
			'jsonpath={.spec.template.spec.containers[0].envFrom[0].configMapRef.name}',
		]);
		const cm = await k.kubectl(['-n', WEIR_NS, 'get', 'configmap', env.stdout.trim(), '-o', 'jsonpath={.data.KUBERNETES_SERVICE_HOST}']);
		assert.equal(cm.stdout.trim(), api.ip, "the agent's API server address comes from deploy/no-kube-proxy's ConfigMap");
	}
	await waitWeirReady(k, log, 300_000);
	await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(coreDnsManifests(k.images.coredns)) });
}

/** One entry of a node's weir_lb4_services map: a frontend's master (slot 0) or one of its backend slots. */
export interface LbMapEntry {
	vip: string;
	port: number;
	protocol: 'TCP' | 'UDP' | number;
	slot: number;
	serviceId: number;
	/** master: backend count */
	count: number;
	/** slot: the backend, ip:port */
	backend: string;
}

function bytes(hex: readonly string[]): Buffer {
	return Buffer.from(hex.map((h) => parseInt(h, 16)));
}

/** Every entry of the node's pinned services map, read with bpftool in the node's mount namespace. */
export async function lbMapEntries(k: Cluster, node: string): Promise<LbMapEntry[]> {
	const r = await k.nodeExec(node, ['bpftool', '-j', 'map', 'dump', 'pinned', join(DEFAULTS.pinRoot, MapName.lb4Services)]);
	return (JSON.parse(r.stdout) as Array<{ key: string[]; value: string[] }>).map((e) => {
		const key = decodeLb4Key(bytes(e.key));
		const v = decodeLb4Service(bytes(e.value));
		const protocol = key.proto === IPPROTO.TCP ? 'TCP' : key.proto === IPPROTO.UDP ? 'UDP' : key.proto;
		return { vip: key.vip, port: key.port, protocol, slot: key.slot, serviceId: v.serviceId, count: v.count, backend: `${v.backendIp}:${v.backendPort}` };
	});
}

/**
 * What is wrong with a map as a whole: a slot without its frontend's master, past its
 * count or under another service id (a leaked entry), a master missing one of its
 * slots. Empty when every frontend is exactly a master and its slots 1..count.
 */
export function lbMapProblems(entries: readonly LbMapEntry[]): string[] {
	const fe = (e: LbMapEntry): string => `${e.vip}:${e.port}/${e.protocol}`;
	const masters = new Map(entries.filter((e) => e.slot === 0).map((e) => [fe(e), e]));
	const slots = new Set(entries.filter((e) => e.slot > 0).map((e) => `${fe(e)}#${e.slot}`));
	const out: string[] = [];
	for (const e of entries) {
		if (e.slot === 0) continue;
		const m = masters.get(fe(e));
		if (!m) out.push(`${fe(e)} slot ${e.slot} (${e.backend}, id ${e.serviceId}) has no master entry`);
		else if (e.slot > m.count) out.push(`${fe(e)} slot ${e.slot} (${e.backend}) is past the count ${m.count}`);
		else if (e.serviceId !== m.serviceId) out.push(`${fe(e)} slot ${e.slot} (${e.backend}) has id ${e.serviceId}, its master ${m.serviceId}`);
	}
	for (const [k, m] of masters) for (let s = 1; s <= m.count; s++) if (!slots.has(`${k}#${s}`)) out.push(`${k}: slot ${s} of ${m.count} is missing`);
	return out;
}

/** A frontend as the map holds it: its service id and its backends (ip:port, sorted); undefined without a master. */
export function lbFrontend(entries: readonly LbMapEntry[], vip: string, port: number, protocol = 'TCP'): { id: number; backends: string[] } | undefined {
	const mine = entries.filter((e) => e.vip === vip && e.port === port && e.protocol === protocol);
	const m = mine.find((e) => e.slot === 0);
	if (!m) return undefined;
	return {
		id: m.serviceId,
		backends: mine
			.filter((e) => e.slot > 0)
			.map((e) => e.backend)
			.sort(),
	};
}

/**
 * Waits until, on every node, the map holds exactly `want()` (ip:port) as the frontend's
 * backends, its master and slots 1..count and nothing else; returns how long that took
 * and every node's entries. (Leaks of other frontends are for `lbMapProblems`.)
 */
export async function waitLbFrontend(
	k: Cluster,
	what: string,
	timeoutMs: number,
	vip: string,
	port: number,
	want: () => Promise<string[]> | string[],
): Promise<{ ms: number; id: number; byNode: Map<string, LbMapEntry[]> }> {
	const t0 = Date.now();
	let last = '';
	try {
		return await waitFor(
			what,
			timeoutMs,
			async () => {
				const expect = [...(await want())].sort();
				const byNode = new Map<string, LbMapEntry[]>();
				let id = 0;
				for (const n of k.nodes) {
					const entries = await lbMapEntries(k, n.name);
					byNode.set(n.name, entries);
					const f = lbFrontend(entries, vip, port);
					const problems = lbMapProblems(entries.filter((e) => e.vip === vip && e.port === port));
					last = `${n.name}: ${vip}:${port} holds ${f ? `id ${f.id} [${f.backends.join(' ')}]` : 'nothing'}, want [${expect.join(' ')}]${problems.length ? `; ${problems.join('; ')}` : ''}`;
					if (!f || problems.length || f.backends.join(' ') !== expect.join(' ')) return undefined;
					id = f.id;
				}
				return { ms: Date.now() - t0, id, byNode };
			},
			100,
		);
	} catch (err) {
		throw new Error(`${(err as Error).message}; last seen: ${last}`, { cause: err });
	}
}

/** The agents' containers that restarted, and their log lines at pino level error or above (or not JSON and mentioning an error). */
export async function agentTrouble(k: Cluster): Promise<{ restarts: string[]; errors: string[] }> {
	const r = await k.kubectl(['-n', WEIR_NS, 'get', 'pods', '-l', 'app.kubernetes.io/name=weir-agent', '-o', 'json']);
	const pods = (
		JSON.parse(r.stdout) as {
			items: Array<{
				metadata: { name: string };
				status: { containerStatuses?: Array<{ name: string; restartCount: number }>; initContainerStatuses?: Array<{ name: string; restartCount: number }> };
			}>;
		}
	).items;
	const restarts: string[] = [];
	const errors: string[] = [];
	for (const p of pods) {
		for (const s of [...(p.status.initContainerStatuses ?? []), ...(p.status.containerStatuses ?? [])]) {
			if (s.restartCount !== 0) restarts.push(`${p.metadata.name}/${s.name}: ${s.restartCount} restarts`);
		}
		const logs = await k.kubectl(['-n', WEIR_NS, 'logs', p.metadata.name, '-c', 'agent', '--tail=-1']);
		for (const line of logs.stdout.split('\n').filter(Boolean)) {
			let level: number | undefined;
			try {
				level = (JSON.parse(line) as { level?: number }).level;
			} catch {
				level = undefined;
			}
			if (level === undefined ? /error/i.test(line) : level >= 50) errors.push(`${p.metadata.name}: ${line}`);
		}
	}
	return { restarts, errors };
}
