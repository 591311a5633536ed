// Shared by the cluster tests of ClusterIP Services (test/cluster/services*.test.ts):
// Weir installed from deploy/ with or without kube-proxy, pods found by label, shell
// commands run in pods.
import assert from 'node:assert/strict';
import { clusterStatus, type Cluster } from '../../hack/cluster/cluster.js';
import { coreDnsManifests } from '../../hack/cluster/configs.js';
import { waitFor } from '../../hack/cluster/exec.js';
import { applyDeploy, loadAgentImage, waitWeirReady, WEIR_NS } from '../../hack/demo/install.js';

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
	await applyDeploy(k);
	if (!k.kubeProxy) {
		// With nothing to translate the kubernetes Service before Weir runs, the agent is
		// told where the API server is (Cilium's k8sServiceHost): docs/services.md.
		const api = await apiServerEndpoint(k);
		await k.kubectl(['-n', WEIR_NS, 'set', 'env', 'daemonset/weir-agent', `KUBERNETES_SERVICE_HOST=${api.ip}`, `KUBERNETES_SERVICE_PORT=${api.port}`]);
	}
	await waitWeirReady(k, log, 300_000);
	await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(coreDnsManifests(k.images.coredns)) });
}
