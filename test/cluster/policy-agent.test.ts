// The policy agent against a real kube-apiserver (control-plane mode of the local
// cluster) and the real datapath on lab pod namespaces: the segregation scenario
// applied with kubectl, the drop seen through `weir observe`, and the faults: the agent
// killed and restarted while traffic flows, the API server gone for 60 seconds.
//
// Pods here are API objects bound to a lab node with no kubelet; their network is
// the lab topology's, and their addresses are written to the pod status as a kubelet
// would. The agent reads its local endpoints from a file (the CNI's job on a node).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Datapath, removePinRoot } from '../../src/kernel/datapath.js';
import { Flow } from '../../src/observe/flow.js';
import { repoRoot } from '../../src/shared/package.js';
import { Cluster, freePort, startCluster } from '../../hack/cluster/cluster.js';
import { NODE_IP, Pod, Prober, Topology } from '../../hack/lab/topology.js';
import { ensureBpffs, requireRoot, testPinRoot } from '../helpers/bpf.js';

const run = promisify(execFile);
const NODE = 'lab-node';
const REDIS = 6379;
let OBSERVER_PORT = 0; // a free port, found at start (fixed ports collide with other labs on this machine)
const AGENT = resolve(repoRoot, 'dist/src/agent/main.js');
const WEIR = resolve(repoRoot, 'dist/src/cli/main.js');

const SCENARIO = [
	{ ns: 'a-ingress', pod: 'ingress', app: 'ingress' },
	{ ns: 'b-apache', pod: 'apache', app: 'apache' },
	{ ns: 'c-app', pod: 'app', app: 'app' },
	{ ns: 'd-redis', pod: 'redis', app: 'redis' },
];

const POLICY = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: redis-only-from-app
  namespace: d-redis
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: c-app
  egress:
  - to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: c-app
`;

let cluster: Cluster;
let topo: Topology;
let pinRoot: string;
let work: string;
let agent: ChildProcess | undefined;
const pods = new Map<string, Pod>();
const probers = new Map<string, Prober>();

async function kubectl(args: string[], input?: string): Promise<string> {
	const r = await cluster.kubectl(args, input === undefined ? {} : { input });
	return r.stdout;
}

function startAgent(): ChildProcess {
	const logFd = openSync(join(work, 'agent.log'), 'a');
	try {
		const child = spawn(process.execPath, [
			AGENT, '--node-name', NODE, '--pin-root', pinRoot, '--kubeconfig', cluster.kubeconfig,
			'--endpoints-file', join(work, 'endpoints.json'), '--observer-host', '127.0.0.1',
			'--observer-port', String(OBSERVER_PORT), '--log-level', 'info',
		], { stdio: ['ignore', logFd, logFd] });
		return child;
	} finally {
		closeSync(logFd);
	}
}

async function waitReady(timeoutMs = 20_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		if (agent && agent.exitCode !== null) throw new Error(`agent exited (${agent.exitCode}); log:\n${readFileSync(join(work, 'agent.log'), 'utf8').slice(-3000)}`);
		try {
			const r = await fetch(`http://127.0.0.1:${OBSERVER_PORT}/readyz`);
			if (r.ok) return;
		} catch {
			/* not listening yet */
		}
		if (Date.now() > deadline) throw new Error(`agent not ready; log:\n${readFileSync(join(work, 'agent.log'), 'utf8').slice(-3000)}`);
		await new Promise((r) => setTimeout(r, 100));
	}
}

async function stopAgent(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
	const a = agent;
	agent = undefined;
	if (!a || a.exitCode !== null) return;
	const exited = new Promise((r) => a.once('exit', r));
	a.kill(signal);
	await exited;
}

const probe = (from: string, to: string, port = REDIS, timeout = 500): Promise<boolean> =>
	probers.get(from)!.probe('tcp', pods.get(to)!.ip, port, timeout);

async function until(what: string, timeoutMs: number, pred: () => Promise<boolean>): Promise<number> {
	const t0 = Date.now();
	for (;;) {
		if (await pred()) return Date.now() - t0;
		if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
		await new Promise((r) => setTimeout(r, 100));
	}
}

before(async () => {
	requireRoot();
	ensureBpffs();
	OBSERVER_PORT = await freePort();
	work = mkdtempSync(join(tmpdir(), 'weir-agent-test-'));
	cluster = await startCluster({ name: 'wpolicy', mode: 'control-plane', log: () => undefined });
	topo = Topology.create(0, 240);
	pinRoot = testPinRoot('agent');
	SCENARIO.forEach((s, i) => pods.set(s.pod, topo.addPod(s.pod, `10.240.0.${10 + i}`)));

	// Attach the pod programs as the CNI would (pinned links outlive this handle).
	const dp = await Datapath.open({ pinRoot });
	for (const p of pods.values()) dp.attach(p.hostIfindex, { netns: `/run/netns/${topo.nodeNs}` });
	dp.close();
	writeFileSync(
		join(work, 'endpoints.json'),
		JSON.stringify(SCENARIO.map((s, i) => ({ namespace: s.ns, pod: s.pod, ip: pods.get(s.pod)!.ip, epId: i + 1, ifindex: pods.get(s.pod)!.hostIfindex }))),
	);

	// The API objects: namespaces, a node, pods bound to it with their addresses.
	const docs: string[] = [`apiVersion: v1\nkind: Node\nmetadata:\n  name: ${NODE}\n`];
	for (const s of SCENARIO) {
		docs.push(`apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${s.ns}\n`);
		docs.push(`apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: ${s.ns}\n`);
		docs.push(`apiVersion: v1
kind: Pod
metadata:
  name: ${s.pod}
  namespace: ${s.ns}
  labels: {app: ${s.app}}
spec:
  nodeName: ${NODE}
  automountServiceAccountToken: false
  containers:
  - name: main
    image: ${cluster.images.workload}
    ports: [{name: redis, containerPort: ${REDIS}}]
`);
	}
	await kubectl(['apply', '-f', '-'], docs.join('---\n'));
	await kubectl(['patch', 'node', NODE, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] } })]);
	for (const s of SCENARIO) {
		const ip = pods.get(s.pod)!.ip;
		await kubectl(['-n', s.ns, 'patch', 'pod', s.pod, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } })]);
	}

	for (const p of pods.values()) probers.set(p.name, topo.prober(p));
	await topo.serve(pods.get('redis')!, [REDIS]);
	await topo.serve(pods.get('app')!, [REDIS]);
	agent = startAgent();
	await waitReady();
});

after(async () => {
	await stopAgent('SIGKILL');
	for (const p of probers.values()) p.close();
	try {
		if (pinRoot) (await Datapath.open({ pinRoot })).destroy();
	} catch {
		/* nothing pinned */
	}
	if (pinRoot) removePinRoot(pinRoot);
	topo?.destroy();
	if (cluster) await cluster.stop();
	if (work && process.env['WEIR_KEEP_TEST_DIR']) process.stderr.write(`kept ${work}\n`);
	else if (work) rmSync(work, { recursive: true, force: true });
});

describe('segregation scenario against a real API server', () => {
	test('before any policy every pair connects', async () => {
		const dump = async (): Promise<string> => {
			const dp = await Datapath.open({ pinRoot });
			try {
				return JSON.stringify({ endpoints: dp.endpointEntries(), ipcache: dp.ipcacheEntries(), policy: dp.policyEntryCount(), metrics: dp.readMetrics().samples.map((m) => `${m.reasonName}/${m.direction}=${m.packets}`) });
			} finally {
				dp.close();
			}
		};
		for (const from of ['ingress', 'apache', 'app']) assert.ok(await probe(from, 'redis'), `${from} -> redis; maps: ${await dump()}`);
		assert.ok(await probe('redis', 'app'), 'redis -> app');
	});

	test('kubectl apply: app reaches redis, apache is dropped, and weir observe shows why within a second', async () => {
		await kubectl(['apply', '-f', '-'], POLICY);
		const took = await until('apache -> redis dropped', 10_000, async () => !(await probe('apache', 'redis', REDIS, 300)));
		process.stdout.write(`# policy enforced ${took} ms after kubectl apply returned\n`);
		assert.ok(await probe('app', 'redis'), 'app -> redis still works');
		assert.ok(!(await probe('ingress', 'redis')), 'ingress -> redis dropped');
		assert.ok(await probe('redis', 'app'), 'redis -> app (egress to c-app) works');
		assert.ok(!(await probe('redis', 'apache', REDIS, 300)), 'redis -> apache (egress) dropped');

		const since = new Date().toISOString();
		assert.ok(!(await probe('apache', 'redis', REDIS, 300)));
		// The agent has the flow within a second of the drop (polled through its API)...
		const dropped = Date.now();
		let seen: Flow | undefined;
		while (!seen && Date.now() - dropped < 3000) {
			const r = (await (await fetch(`http://127.0.0.1:${OBSERVER_PORT}/v1/flows?verdict=DROPPED&since=${since}`)).json()) as { flows: Flow[] };
			seen = r.flows.find((f) => f.source.pod === 'apache' && f.destination.pod === 'redis');
			if (!seen) await new Promise((r) => setTimeout(r, 50));
		}
		const latency = Date.now() - dropped;
		assert.ok(seen, 'the drop reached the agent');
		assert.ok(latency < 1000, `the drop was visible ${latency} ms after the probe gave up`);
		// ...and `weir observe` shows it.
		const { stdout } = await run(process.execPath, [WEIR, 'observe', '--server', `http://127.0.0.1:${OBSERVER_PORT}`, '--verdict', 'DROPPED', '--pod', 'd-redis/redis', '--since', since, '-o', 'json']);
		const flow = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Flow).find((f) => f.source.pod === 'apache');
		assert.ok(flow, 'weir observe prints the drop');
		assert.ok(Date.parse(flow.time) - Date.parse(since) < 1000, 'the drop happened within a second of the probe');
		assert.equal(flow.dropReason, 'POLICY_DENIED');
		assert.equal(flow.source.namespace, 'b-apache');
		assert.equal(flow.destination.namespace, 'd-redis');
		assert.equal(flow.destination.port, REDIS);
		assert.deepEqual(flow.isolatedBy?.map((p) => `${p.namespace}/${p.name}`), ['d-redis/redis-only-from-app']);
		const compact = await run(process.execPath, [WEIR, 'observe', '--server', `http://127.0.0.1:${OBSERVER_PORT}`, '--verdict', 'DROPPED', '--namespace', 'b-apache', '--port', String(REDIS)]);
		assert.match(compact.stdout, /b-apache\/apache:\d+ -> d-redis\/redis:6379 ingress TCP Flags: SYN DROPPED \(POLICY_DENIED: .*isolated by d-redis\/redis-only-from-app\)/);
		const metrics = await (await fetch(`http://127.0.0.1:${OBSERVER_PORT}/metrics`)).text();
		assert.match(metrics, /weir_flows_total\{verdict="DROPPED",reason="POLICY_DENIED",direction="ingress"\} [1-9]/);
		assert.match(metrics, /weir_policy_compile_seconds_count [1-9]/);
	});

	test('deleting the policy restores connectivity', async () => {
		await kubectl(['-n', 'd-redis', 'delete', 'networkpolicy', 'redis-only-from-app']);
		await until('apache -> redis connects again', 10_000, () => probe('apache', 'redis'));
		assert.ok(await probe('ingress', 'redis'));
	});
});

describe('faults', () => {
	test('agent killed and restarted while traffic flows: enforcement never lapses, allowed connections survive', async () => {
		await kubectl(['apply', '-f', '-'], POLICY);
		await until('policy enforced', 10_000, async () => !(await probe('apache', 'redis', REDIS, 300)));
		const stream = spawn('ip', ['netns', 'exec', pods.get('app')!.netns, process.execPath, resolve(repoRoot, 'dist/hack/lab/probe.js'), 'stream', pods.get('redis')!.ip, String(REDIS)], { stdio: ['ignore', 'pipe', 'pipe'] });
		let echoed = '';
		stream.stdout.on('data', (d: Buffer) => (echoed += d.toString()));
		const leaks: string[] = [];
		let probing = true;
		const denier = (async () => {
			while (probing) if (await probe('apache', 'redis', REDIS, 200)) leaks.push(new Date().toISOString());
		})();
		try {
			await until('stream flowing', 5000, async () => echoed.split('\n').length > 5);
			await stopAgent('SIGKILL');
			await new Promise((r) => setTimeout(r, 1500)); // no agent at all
			agent = startAgent();
			await waitReady();
			await new Promise((r) => setTimeout(r, 1000));
			const lines = echoed.split('\n').length;
			await until('stream continues after the restart', 5000, async () => echoed.split('\n').length > lines + 5);
			assert.equal(stream.exitCode, null, 'the long-lived allowed connection survived');
		} finally {
			probing = false;
			await denier;
			stream.kill('SIGKILL');
		}
		if (leaks.length) {
			const dp = await Datapath.open({ pinRoot });
			const state = JSON.stringify({ endpoints: dp.endpointEntries(), ipcache: dp.ipcacheEntries(), policy: dp.policyEntryCount() });
			dp.close();
			const flows = (await (await fetch(`http://127.0.0.1:${OBSERVER_PORT}/v1/flows?pod=apache&limit=6`)).json()) as { flows: Flow[] };
			const ct = (await Datapath.open({ pinRoot })).conntrack().filter((c) => c.key.saddr === pods.get('apache')!.ip).slice(0, 4);
			assert.fail(`flows: ${JSON.stringify(flows.flows.map((f) => [f.time, f.summary, f.match, f.direction]))}\nct: ${JSON.stringify(ct, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}\n${leaks.length} denied probes succeeded (first ${leaks[0]}, last ${leaks.at(-1)}); maps: ${state}\nagent log:\n${readFileSync(join(work, 'agent.log'), 'utf8').slice(-4000)}`);
		}
		const nums = echoed.split('\n').filter(Boolean).map(Number);
		nums.forEach((n, i) => assert.equal(n, i, 'stream data arrived complete and in order'));
		// The restarted agent applies new changes.
		await kubectl(['-n', 'd-redis', 'delete', 'networkpolicy', 'redis-only-from-app']);
		await until('change applied by the new agent', 10_000, () => probe('apache', 'redis'));
	});

	test('API server gone for 60 s: the last state stays enforced, changes apply within seconds after', async () => {
		await kubectl(['apply', '-f', '-'], POLICY);
		await until('policy enforced', 10_000, async () => !(await probe('apache', 'redis', REDIS, 300)));
		await cluster.stopComponent('kube-apiserver');
		const t0 = Date.now();
		try {
			while (Date.now() - t0 < 60_000) {
				assert.ok(await probe('app', 'redis'), 'allowed flow keeps working while the API is gone');
				assert.ok(!(await probe('apache', 'redis', REDIS, 300)), 'denied flow stays denied while the API is gone');
				await new Promise((r) => setTimeout(r, 2000));
			}
			const ready = await fetch(`http://127.0.0.1:${OBSERVER_PORT}/readyz`);
			assert.equal(ready.status, 200, 'the agent stays ready on its last state');
		} finally {
			await cluster.startComponent('kube-apiserver');
		}
		const t1 = Date.now();
		await kubectl(['-n', 'd-redis', 'delete', 'networkpolicy', 'redis-only-from-app']);
		const took = await until('change after the API returned', 15_000, () => probe('apache', 'redis'));
		process.stdout.write(`# change applied ${Date.now() - t1} ms after the API server came back (${took} ms after delete)\n`);
		const log = readFileSync(join(work, 'agent.log'), 'utf8');
		assert.match(log, /watch failed; keeping the last state and retrying/);
	});
});

