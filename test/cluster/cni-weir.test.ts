// The local cluster with Weir as its only CNI: nodes start with no CNI (NotReady), a
// weir-agent runs in each node's mount and network namespaces as the DaemonSet would
// (host network, the node's own bpffs, /etc/cni/net.d and /opt/cni/bin), installs
// weir-cni and writes its conflist once ready with the PodCIDR from its Node object.
// A Deployment spread over both nodes gets Running pods with addresses from each
// node's PodCIDR; pods reach each other across nodes; kubectl exec works; deleting the
// pods leaves no veth, no IP allocation and no endpoint behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { repoRoot } from '../../src/shared/package.js';
import { startCluster, clusterStatus, type Cluster } from '../../hack/cluster/cluster.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { waitFor } from '../../hack/cluster/exec.js';
import { APISERVER_PORT } from '../../hack/cluster/configs.js';

const NAME = 'twcni';
const AGENT = resolve(repoRoot, 'dist/src/agent/main.js');
const RUN_DIR = `/run/weir-test-${NAME}`;

const DEPLOYMENT = (image: string): string => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 4
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: web}
      containers:
      - name: main
        image: ${image}
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
`;

interface PodRow {
	name: string;
	node: string;
	ip: string;
	phase: string;
}

async function podRows(c: Cluster): Promise<PodRow[]> {
	const out = await c.kubectl(['get', 'pods', '-l', 'app=web', '-o', 'json']);
	const items = (
		JSON.parse(out.stdout) as { items: Array<{ metadata: { name: string }; spec: { nodeName?: string }; status: { podIP?: string; phase?: string } }> }
	).items;
	return items.map((p) => ({ name: p.metadata.name, node: p.spec.nodeName ?? '', ip: p.status.podIP ?? '', phase: p.status.phase ?? '' }));
}

function inCidr(ip: string, cidr: string): boolean {
	const [base, len] = cidr.split('/');
	const n = (s: string): number => s.split('.').reduce((a, b) => ((a << 8) | Number(b)) >>> 0, 0);
	const bits = Number(len);
	const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
	return (n(ip) & mask) >>> 0 === (n(base!) & mask) >>> 0;
}

test('the local cluster with Weir as its only CNI', { timeout: 3_600_000 }, async (t) => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	const work = mkdtempSync(join(tmpdir(), 'weir-cni-cluster-'));
	const agents: ChildProcess[] = [];
	const c = await startCluster({ name: NAME, cni: 'none', coreDns: false, log: (m) => t.diagnostic(m) });
	const pids = clusterStatus(NAME).processes.map((p) => p.pid);
	try {
		// An in-cluster kubeconfig: the API server as the nodes reach it.
		const kc = join(work, 'agent.kubeconfig');
		writeFileSync(kc, readFileSync(c.kubeconfig, 'utf8').replace(c.server, `https://${c.nodes[0]!.nodeIP}:${APISERVER_PORT}`));
		for (const n of c.nodes) {
			// kind's node image ships these reference plugins; Weir installs only weir-cni.
			for (const p of ['host-local', 'portmap']) copyFileSync(join('/usr/lib/cni', p), join(n.rootDir, 'opt/cni/bin', p));
			const logFd = openSync(join(work, `agent-${n.name}.log`), 'a');
			try {
				agents.push(
					spawn(
						'nsenter',
						[
							`--target=${n.holderPid}`,
							'--mount',
							'--net',
							'--',
							process.execPath,
							'--enable-source-maps',
							AGENT,
							// A host process in the machine's root cgroup: the socket load balancer would attach there,
							// for every process of the machine. It is tested from deploy/ (test/cluster/services.test.ts).
							'--kube-proxy-replacement',
							'false',
							'--node-name',
							n.name,
							'--kubeconfig',
							kc,
							'--pin-root',
							'/sys/fs/bpf/weir',
							'--cni-socket',
							`${RUN_DIR}/${n.name}/cni.sock`,
							'--cni-state-file',
							`${RUN_DIR}/${n.name}/endpoints.json`,
							'--ztunnel-flow-socket',
							`${RUN_DIR}/${n.name}/ztunnel/flows.sock`,
							'--observer-host',
							'127.0.0.1',
							'--log-level',
							'info',
						],
						{ stdio: ['ignore', logFd, logFd], env: { ...process.env, UV_THREADPOOL_SIZE: '16' } },
					),
				);
			} finally {
				closeSync(logFd);
			}
		}
		const agentLogs = (): string => c.nodes.map((n) => `--- ${n.name}\n${readFileSync(join(work, `agent-${n.name}.log`), 'utf8').slice(-3000)}`).join('\n');
		const ready = async (): Promise<string> =>
			(await c.kubectl(['get', 'nodes', '-o', 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}'])).stdout;
		try {
			await waitFor('nodes Ready once weir writes its conflist', 90_000, async () => ((await ready()) === 'True True' ? true : undefined), 500);
		} catch (err) {
			throw new Error(`${(err as Error).message}\n${agentLogs()}`);
		}
		for (const n of c.nodes) {
			const conf = JSON.parse((await c.nodeExec(n.name, ['cat', '/etc/cni/net.d/05-weir.conflist'])).stdout) as {
				plugins: Array<{ type: string; ipam?: { ranges: Array<Array<{ subnet: string }>> } }>;
			};
			assert.deepEqual(
				conf.plugins.map((p) => p.type),
				['weir-cni', 'portmap'],
			);
			assert.equal(conf.plugins[0]!.ipam!.ranges[0]![0]!.subnet, n.podCIDR, 'PodCIDR from the Node object');
			assert.ok((await c.nodeExec(n.name, ['test', '-x', '/opt/cni/bin/weir-cni'], { allowFail: true })).code === 0, 'weir-cni installed');
		}

		await c.kubectl(['apply', '-f', '-'], { input: DEPLOYMENT(c.images.workload) });
		try {
			await c.kubectl(['rollout', 'status', 'deployment/web', '--timeout=180s'], { timeoutMs: 190_000 });
		} catch (err) {
			const pods = await c.kubectl(['get', 'pods', '-o', 'wide'], { allowFail: true });
			const events = await c.kubectl(['get', 'events', '--sort-by=.lastTimestamp'], { allowFail: true });
			throw new Error(`${(err as Error).message}\n${pods.stdout}\n${events.stdout.slice(-3000)}\n${agentLogs()}`);
		}
		const rows = await podRows(c);
		assert.equal(rows.length, 4);
		for (const r of rows) {
			assert.equal(r.phase, 'Running', JSON.stringify(r));
			const node = c.nodes.find((n) => n.name === r.node)!;
			assert.ok(inCidr(r.ip, node.podCIDR), `${r.name} ${r.ip} in ${node.name}'s ${node.podCIDR}`);
		}
		assert.deepEqual([...new Set(rows.map((r) => r.node))].sort(), c.nodes.map((n) => n.name).sort(), 'pods on both nodes');

		// Across nodes, both ways, through kubectl exec.
		const a = rows.find((r) => r.node === c.nodes[0]!.name)!;
		const b = rows.find((r) => r.node === c.nodes[1]!.name)!;
		for (const [from, to] of [
			[a, b],
			[b, a],
		] as const) {
			const r = await c.kubectl(['exec', from.name, '--', 'timeout', '10', 'wget', '-qO-', `http://${to.ip}:8080/`]);
			assert.match(r.stdout, new RegExp(`pod=${to.name} .*status=200`), `${from.name} -> ${to.name}`);
		}
		// The agent knows each pod by name, on its node.
		for (const n of c.nodes) {
			const eps = (
				JSON.parse(readFileSync(`${RUN_DIR}/${n.name}/endpoints.json`, 'utf8')) as { endpoints: Array<{ pod: string; namespace: string; state: string }> }
			).endpoints;
			assert.deepEqual(
				eps.map((e) => e.pod).sort(),
				rows
					.filter((r) => r.node === n.name)
					.map((r) => r.name)
					.sort(),
			);
			assert.ok(eps.every((e) => e.namespace === 'default' && e.state === 'ready'));
		}

		await c.kubectl(['delete', 'deployment', 'web', '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
		await waitFor('pods gone', 120_000, async () => ((await podRows(c)).length === 0 ? true : undefined), 500);
		for (const n of c.nodes) {
			await waitFor(
				`${n.name}: endpoints released`,
				60_000,
				async () => {
					const eps = (JSON.parse(readFileSync(`${RUN_DIR}/${n.name}/endpoints.json`, 'utf8')) as { endpoints: unknown[] }).endpoints;
					return eps.length === 0 ? true : undefined;
				},
				500,
			);
			const links = (await c.nodeExec(n.name, ['ip', '-o', 'link', 'show'])).stdout;
			assert.doesNotMatch(links, /lxc[0-9a-f]{12}/, `${n.name}: host veths left`);
			const ipam = (await c.nodeExec(n.name, ['sh', '-c', 'ls /var/lib/cni/networks/weir 2>/dev/null || true'])).stdout;
			assert.deepEqual(
				ipam.split('\n').filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)),
				[],
				`${n.name}: host-local allocations left`,
			);
			const map = (await c.nodeExec(n.name, ['bpftool', '-j', 'map', 'dump', 'pinned', '/sys/fs/bpf/weir/weir_endpoints'])).stdout;
			assert.deepEqual(JSON.parse(map), [], `${n.name}: endpoint map entries left`);
			const pins = (await c.nodeExec(n.name, ['sh', '-c', 'ls /sys/fs/bpf/weir/links 2>/dev/null || true'])).stdout.trim();
			assert.equal(pins, '', `${n.name}: link pins left`);
		}
	} finally {
		for (const a of agents) {
			if (a.exitCode === null && a.signalCode === null) {
				const exited = new Promise((r) => a.once('exit', r));
				a.kill('SIGTERM');
				await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
				if (a.exitCode === null && a.signalCode === null) a.kill('SIGKILL');
			}
		}
		const report = await c.stop();
		rmSync(work, { recursive: true, force: true });
		if (existsSync(RUN_DIR)) rmSync(RUN_DIR, { recursive: true, force: true });
		assert.deepEqual(report.left, []);
	}
	assert.deepEqual(await leftovers(NAME, pids), []);
});
