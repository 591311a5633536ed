// The policy agent's lab: a real kube-apiserver (control-plane mode of the local
// cluster), lab pod namespaces with the pod programs attached, the segregation
// scenario's API objects bound to a lab node with no kubelet, and a real weir-agent
// reading its local endpoints from a file (the CNI's job on a node). Shared by the
// cluster test (behaviour) and the flows benchmark (figures). Everything made here is
// removed by destroy(), also after a failed start.
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { Datapath, removePinRoot } from '../../src/kernel/datapath.js';
import { Flow } from '../../src/observe/flow.js';
import { NetworkPolicy } from '../../src/policy/model.js';
import { repoRoot } from '../../src/shared/package.js';
import { Cluster, freePort, startCluster } from '../../hack/cluster/cluster.js';
import { NODE_IP, Pod, Prober, Topology } from '../../hack/lab/topology.js';
import { ensureBpffs, requireRoot, testPinRoot } from './bpf.js';

export const NODE = 'lab-node';
export const REDIS = 6379;
const AGENT = resolve(repoRoot, 'dist/src/agent/main.js');

export const SCENARIO = [
	{ ns: 'a-ingress', pod: 'ingress', app: 'ingress' },
	{ ns: 'b-apache', pod: 'apache', app: 'apache' },
	{ ns: 'c-app', pod: 'app', app: 'app' },
	{ ns: 'd-redis', pod: 'redis', app: 'redis' },
] as const;

/** d-redis admits only c-app, and talks only to c-app. */
export const POLICY = {
	apiVersion: 'networking.k8s.io/v1',
	kind: 'NetworkPolicy',
	metadata: { name: 'redis-only-from-app', namespace: 'd-redis' },
	spec: {
		podSelector: {},
		policyTypes: ['Ingress', 'Egress'],
		ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'c-app' } } }] }],
		egress: [{ to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'c-app' } } }] }],
	},
} satisfies NetworkPolicy & { apiVersion: string; kind: string };

/** client-node's typed models call an ingress rule's `from` `_from` (and drop unknown fields). */
export function typedPolicy(p: NetworkPolicy): k8s.V1NetworkPolicy {
	const spec = p.spec!;
	return {
		metadata: p.metadata!,
		spec: { ...spec, ingress: spec.ingress?.map(({ from, ...rest }) => ({ ...rest, ...(from ? { _from: from } : {}) })) } as k8s.V1NetworkPolicySpec,
	};
}

/** Polls `pred` every 100 ms until it holds; the deadline is a timeout, not a goal. Returns the ms it took. */
export async function until(what: string, timeoutMs: number, pred: () => Promise<boolean>): Promise<number> {
	const t0 = Date.now();
	for (;;) {
		if (await pred()) return Date.now() - t0;
		if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
		await new Promise((r) => setTimeout(r, 100));
	}
}

export interface PolicyLabOptions {
	/** names the cluster (and its netns and directories) */
	name: string;
	/** pods get 10.<subnet>.0.10 and up */
	subnet: number;
	/** names the pin root */
	tag: string;
	agentLogLevel?: string;
}

export class PolicyLab {
	cluster: Cluster | undefined;
	topo: Topology | undefined;
	pinRoot = '';
	work = '';
	observerPort = 0;
	agent: ChildProcess | undefined;
	readonly pods = new Map<string, Pod>();
	readonly probers = new Map<string, Prober>();

	private constructor(private readonly o: PolicyLabOptions) {}

	/** Everything up and the agent ready; on failure whatever was made is removed again. */
	static async start(o: PolicyLabOptions): Promise<PolicyLab> {
		const lab = new PolicyLab(o);
		try {
			await lab.setup();
		} catch (err) {
			await lab.destroy();
			throw err;
		}
		return lab;
	}

	get observer(): string {
		return `http://127.0.0.1:${this.observerPort}`;
	}

	private async setup(): Promise<void> {
		requireRoot();
		ensureBpffs();
		this.observerPort = await freePort(); // fixed ports collide with other labs on this machine
		this.work = mkdtempSync(join(tmpdir(), 'weir-agent-lab-'));
		this.cluster = await startCluster({ name: this.o.name, mode: 'control-plane', log: () => undefined });
		const topo = (this.topo = Topology.create(0, this.o.subnet));
		this.pinRoot = testPinRoot(this.o.tag);
		SCENARIO.forEach((s, i) => this.pods.set(s.pod, topo.addPod(s.pod, `10.${this.o.subnet}.0.${10 + i}`)));

		// Attach the pod programs as the CNI would (pinned links outlive this handle).
		const dp = await Datapath.open({ pinRoot: this.pinRoot });
		for (const p of this.pods.values()) dp.attach(p.hostIfindex, { netns: `/run/netns/${topo.nodeNs}` });
		dp.close();
		writeFileSync(
			join(this.work, 'endpoints.json'),
			JSON.stringify(SCENARIO.map((s, i) => ({ namespace: s.ns, pod: s.pod, ip: this.pod(s.pod).ip, epId: i + 1, ifindex: this.pod(s.pod).hostIfindex }))),
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
    image: ${this.cluster.images.workload}
    ports: [{name: redis, containerPort: ${REDIS}}]
`);
		}
		await this.kubectl(['apply', '-f', '-'], docs.join('---\n'));
		await this.kubectl([
			'patch',
			'node',
			NODE,
			'--subresource=status',
			'--type=merge',
			'-p',
			JSON.stringify({ status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] } }),
		]);
		for (const s of SCENARIO) {
			const ip = this.pod(s.pod).ip;
			await this.kubectl([
				'-n',
				s.ns,
				'patch',
				'pod',
				s.pod,
				'--subresource=status',
				'--type=merge',
				'-p',
				JSON.stringify({ status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } }),
			]);
		}

		for (const p of this.pods.values()) this.probers.set(p.name, topo.prober(p));
		await topo.serve(this.pod('redis'), [REDIS]);
		await topo.serve(this.pod('app'), [REDIS]);
		this.startAgent();
		await this.waitReady();
	}

	pod(name: string): Pod {
		const p = this.pods.get(name);
		if (!p) throw new Error(`no lab pod ${name}`);
		return p;
	}

	async kubectl(args: string[], input?: string): Promise<string> {
		if (!this.cluster) throw new Error('the lab cluster did not start');
		const r = await this.cluster.kubectl(args, input === undefined ? {} : { input });
		return r.stdout;
	}

	/** kubectl apply of the scenario's NetworkPolicy (JSON is YAML). */
	async applyPolicy(): Promise<void> {
		await this.kubectl(['apply', '-f', '-'], JSON.stringify(POLICY));
	}

	async deletePolicy(): Promise<void> {
		await this.kubectl(['-n', POLICY.metadata.namespace, 'delete', 'networkpolicy', POLICY.metadata.name]);
	}

	/** One TCP connection attempt from a lab pod to another: true when the echo came back. */
	probe(from: string, to: string, port = REDIS, timeoutMs = 500): Promise<boolean> {
		const p = this.probers.get(from);
		if (!p) throw new Error(`no prober in ${from}`);
		return p.probe('tcp', this.pod(to).ip, port, timeoutMs);
	}

	/** GET /v1/flows with a query string. */
	async flows(query: string): Promise<Flow[]> {
		const r = await fetch(`${this.observer}/v1/flows?${query}`);
		if (!r.ok) throw new Error(`GET /v1/flows?${query}: ${r.status} ${await r.text()}`);
		return ((await r.json()) as { flows: Flow[] }).flows;
	}

	startAgent(): ChildProcess {
		const logFd = openSync(join(this.work, 'agent.log'), 'a');
		try {
			this.agent = spawn(
				process.execPath,
				[
					AGENT,
					// A host process in the machine's root cgroup: the socket load balancer would attach there,
					// for every process of the machine. It is tested from deploy/ (test/cluster/services.test.ts).
					'--kube-proxy-replacement',
					'false',
					// Likewise its capture routing would go into the machine's own network namespace
					// (test/kernel/mesh-agent.test.ts runs an agent in a lab node namespace for it).
					'--mesh',
					'false',
					'--node-name',
					NODE,
					'--pin-root',
					this.pinRoot,
					'--kubeconfig',
					this.cluster!.kubeconfig,
					'--endpoints-file',
					join(this.work, 'endpoints.json'),
					// not the machine's /var/run/weir: the lab's own directory
					'--ztunnel-flow-socket',
					join(this.work, 'ztunnel', 'flows.sock'),
					'--observer-host',
					'127.0.0.1',
					'--observer-port',
					String(this.observerPort),
					'--log-level',
					this.o.agentLogLevel ?? 'info',
				],
				{ stdio: ['ignore', logFd, logFd] },
			);
			return this.agent;
		} finally {
			closeSync(logFd);
		}
	}

	agentLog(tail = 3000): string {
		try {
			return readFileSync(join(this.work, 'agent.log'), 'utf8').slice(-tail);
		} catch {
			return '(no agent log)';
		}
	}

	async waitReady(timeoutMs = 20_000): Promise<void> {
		const deadline = Date.now() + timeoutMs;
		for (;;) {
			if (this.agent && this.agent.exitCode !== null) throw new Error(`agent exited (${this.agent.exitCode}); log:\n${this.agentLog()}`);
			try {
				const r = await fetch(`${this.observer}/readyz`);
				if (r.ok) return;
			} catch {
				/* not listening yet */
			}
			if (Date.now() > deadline) throw new Error(`agent not ready; log:\n${this.agentLog()}`);
			await new Promise((r) => setTimeout(r, 100));
		}
	}

	async stopAgent(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
		const a = this.agent;
		this.agent = undefined;
		if (!a || a.exitCode !== null) return;
		const exited = new Promise((r) => a.once('exit', r));
		a.kill(signal);
		await exited;
	}

	/** Idempotent; keeps the work directory when WEIR_KEEP_TEST_DIR is set. */
	async destroy(): Promise<void> {
		await this.stopAgent('SIGKILL');
		for (const p of this.probers.values()) p.close();
		this.probers.clear();
		if (this.pinRoot) {
			try {
				(await Datapath.open({ pinRoot: this.pinRoot })).destroy();
			} catch {
				/* nothing pinned */
			}
			removePinRoot(this.pinRoot);
		}
		this.topo?.destroy();
		this.topo = undefined;
		const c = this.cluster;
		this.cluster = undefined;
		if (c) await c.stop();
		if (this.work && process.env['WEIR_KEEP_TEST_DIR']) process.stderr.write(`kept ${this.work}\n`);
		else if (this.work) rmSync(this.work, { recursive: true, force: true });
		this.work = '';
	}
}
