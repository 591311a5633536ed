// A real weir-agent process in a lab node namespace, as the kernel tests that drive the
// whole agent run it (test/kernel/mesh-agent.test.ts, mtls-agent.test.ts): the stand-in
// API server beside it (test/helpers/fake-api.ts) and the test's hands through it, the
// agent's files (kubeconfig, endpoints), and the agent started with nsenter (only the
// network namespace changes: bpffs and cgroups stay in view) and stopped. AgentLab
// builds all of it around lab pods and removes it all again, also after a failure.
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { repoRoot } from '../../src/shared/package.js';
import type { AgentStatus } from '../../src/shared/agent-status.js';
import type { Flow } from '../../src/shared/wire.js';
import type { FakeApiObject, FakeApiRequest } from './fake-api.js';
import { Datapath, removePinRoot, uninstallPins } from '../../src/kernel/datapath.js';
import { removeCaptureRouting } from '../../src/kernel/capture.js';
import { NODE_IP } from '../../hack/lab/topology.js';
import { ensureBpffs, requireRoot, testPinRoot } from './bpf.js';
import { LbLab } from './lb-lab.js';
import { Ztunnel } from './ztunnel-process.js';

const AGENT = resolve(repoRoot, 'dist/src/agent/main.js');
const FAKE_API = resolve(repoRoot, 'dist/test/helpers/fake-api.js');
/** inside the lab node namespace: no other listener there */
export const API_PORT = 6443;
export const OBSERVER = 'http://127.0.0.1:9962';
export const PODS = '/api/v1/pods';
export const NAMESPACES = '/api/v1/namespaces';

export async function until(what: string | (() => string), pred: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	while (!(await pred())) {
		if (Date.now() > deadline) throw new Error(`timed out waiting: ${typeof what === 'string' ? what : what()}`);
		await new Promise((r) => setTimeout(r, 50));
	}
}

/** The stand-in API server, and the test's hands in the node namespace. */
export class FakeApi {
	private next = 0;
	private readonly waiting = new Map<number, (a: Record<string, unknown>) => void>();
	private constructor(readonly child: ChildProcess) {
		createInterface({ input: child.stdout! }).on('line', (line) => {
			const a = JSON.parse(line) as Record<string, unknown>;
			if (typeof a['id'] === 'number') this.waiting.get(a['id'])?.(a);
		});
	}

	static async start(nodeNs: string, children: Set<ChildProcess>): Promise<FakeApi> {
		const child = spawn('ip', ['netns', 'exec', nodeNs, process.execPath, FAKE_API, String(API_PORT)], { stdio: ['pipe', 'pipe', 'inherit'] });
		children.add(child);
		child.on('exit', () => children.delete(child));
		await new Promise<void>((res, rej) => {
			const timer = setTimeout(() => rej(new Error('the fake API server did not start')), 10_000);
			child.stdout!.once('data', () => {
				clearTimeout(timer);
				res();
			});
		});
		return new FakeApi(child);
	}

	private ask(c: FakeApiRequest): Promise<Record<string, unknown>> {
		const id = this.next++;
		return new Promise((res, rej) => {
			this.waiting.set(id, (a) => {
				this.waiting.delete(id);
				if (a['ok']) res(a);
				else rej(new Error(String(a['error'])));
			});
			this.child.stdin!.write(`${JSON.stringify({ ...c, id })}\n`);
		});
	}

	async put(path: string, object: FakeApiObject): Promise<void> {
		await this.ask({ cmd: 'put', path, object });
	}

	async delete(path: string, namespace: string | undefined, name: string): Promise<void> {
		await this.ask({ cmd: 'delete', path, ...(namespace ? { namespace } : {}), name });
	}

	/** A kind whose CRD was absent (404) is served from now on. */
	async install(path: string): Promise<void> {
		await this.ask({ cmd: 'install', path });
	}

	/** Lists of `path` answered `ms` late from now on (0: on time). */
	async delay(path: string, ms: number): Promise<void> {
		await this.ask({ cmd: 'delay', path, ms });
	}

	/** A GET from inside the node namespace (the agent's observer API listens there). */
	async get(url: string): Promise<{ status: number; body: string }> {
		const a = await this.ask({ cmd: 'get', url });
		return { status: a['status'] as number, body: a['body'] as string };
	}
}

export const namespaceObject = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });

export const podObject = (node: string, ns: string, name: string, ip: string, annotations?: Record<string, string>) => ({
	apiVersion: 'v1',
	kind: 'Pod',
	metadata: { namespace: ns, name, labels: { app: name }, ...(annotations ? { annotations } : {}) },
	spec: { nodeName: node, containers: [{ name: 'main', image: 'x' }] },
	status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});

export interface LabEndpoint {
	namespace: string;
	pod: string;
	ip: string;
	epId: number;
	ifindex: number;
}

/** weir-agent in the lab node namespace, with its kubeconfig and endpoints file under `work`. */
export class AgentProcess {
	private child: ChildProcess | undefined;

	constructor(
		private readonly o: {
			node: string;
			nodeNs: string;
			work: string;
			pinRoot: string;
			cgroup: string;
			api: FakeApi;
			children: Set<ChildProcess>;
			endpoints: readonly LabEndpoint[];
		},
	) {
		writeFileSync(join(o.work, 'endpoints.json'), JSON.stringify(o.endpoints));
		writeFileSync(
			join(o.work, 'kubeconfig'),
			JSON.stringify({
				apiVersion: 'v1',
				kind: 'Config',
				clusters: [{ name: 'lab', cluster: { server: `http://127.0.0.1:${API_PORT}`, 'insecure-skip-tls-verify': true } }],
				users: [{ name: 'lab', user: {} }],
				contexts: [{ name: 'lab', context: { cluster: 'lab', user: 'lab' } }],
				'current-context': 'lab',
			}),
		);
	}

	log(): string {
		try {
			return readFileSync(join(this.o.work, 'agent.log'), 'utf8').slice(-3000);
		} catch {
			return '(no agent log)';
		}
	}

	/** The agent's log lines (JSON), all of them. */
	logLines(): Array<Record<string, unknown>> {
		try {
			return readFileSync(join(this.o.work, 'agent.log'), 'utf8')
				.split('\n')
				.filter((l) => l.startsWith('{'))
				.map((l) => JSON.parse(l) as Record<string, unknown>);
		} catch {
			return [];
		}
	}

	/** Starts the agent and waits until /readyz answers 200. */
	async start(extra: string[] = []): Promise<void> {
		const { o } = this;
		const logFd = openSync(join(o.work, 'agent.log'), 'a');
		try {
			const a = spawn(
				'nsenter',
				[
					`--net=${o.nodeNs}`,
					'--',
					process.execPath,
					AGENT,
					'--node-name',
					o.node,
					'--pin-root',
					o.pinRoot,
					'--kubeconfig',
					join(o.work, 'kubeconfig'),
					'--endpoints-file',
					join(o.work, 'endpoints.json'),
					'--ztunnel-flow-socket',
					join(o.work, 'ztunnel', 'flows.sock'),
					'--observer-host',
					'127.0.0.1',
					'--cgroup-root',
					o.cgroup,
					...extra,
				],
				{ stdio: ['ignore', logFd, logFd] },
			);
			this.child = a;
			o.children.add(a);
			a.on('exit', () => o.children.delete(a));
		} finally {
			closeSync(logFd);
		}
		await until(
			() => `the agent is ready; log:\n${this.log()}`,
			async () => {
				if (this.child?.exitCode !== null) throw new Error(`the agent exited (${this.child?.exitCode}); log:\n${this.log()}`);
				return (await o.api.get(`${OBSERVER}/readyz`).catch(() => ({ status: 0 }))).status === 200;
			},
			20_000,
		);
	}

	async stop(): Promise<void> {
		const a = this.child;
		this.child = undefined;
		if (!a || a.exitCode !== null || a.signalCode !== null) return;
		const gone = new Promise((r) => a.once('exit', r));
		a.kill('SIGTERM');
		await gone;
	}

	async status(): Promise<AgentStatus> {
		return JSON.parse((await this.o.api.get(`${OBSERVER}/v1/status`)).body) as AgentStatus;
	}

	async flows(): Promise<Flow[]> {
		return (JSON.parse((await this.o.api.get(`${OBSERVER}/v1/flows?limit=1000`)).body) as { flows: Flow[] }).flows;
	}
}

/** A lab pod of an AgentLab: its address, namespace and endpoint id. */
export interface AgentLabPod {
	name: string;
	ip: string;
	namespace: string;
	epId: number;
}

/**
 * Lab namespaces with these pods, the pod programs on their veths (as the CNI attaches
 * them), the stand-in API server with the node, its namespaces and pods, the lab
 * ztunnel, and an agent for those endpoints, not started yet.
 */
export class AgentLab {
	readonly children = new Set<ChildProcess>();
	readonly pinRoot: string;
	lab!: LbLab;
	api!: FakeApi;
	agent!: AgentProcess;
	zt: Ztunnel | undefined;
	dp: Datapath | undefined;
	nodeNs = '';
	work = '';

	constructor(
		readonly tag: string,
		readonly node: string,
	) {
		this.pinRoot = testPinRoot(tag);
	}

	/** `namespaces` with their labels; the pods are in the API as `podObject`s of this node. */
	async create(pods: readonly AgentLabPod[], namespaces: Readonly<Record<string, Record<string, string>>>): Promise<void> {
		requireRoot();
		ensureBpffs();
		this.work = mkdtempSync(join(tmpdir(), `weir-${this.tag}-agent-`));
		this.lab = await LbLab.create(this.tag, pods);
		this.nodeNs = `/run/netns/${this.lab.topo.nodeNs}`;
		this.dp = await Datapath.open({ pinRoot: this.pinRoot });
		for (const p of this.lab.topo.pods) this.dp.attach(p.hostIfindex, { netns: this.nodeNs });
		this.api = await FakeApi.start(this.lab.topo.nodeNs, this.children);
		await this.api.put('/api/v1/nodes', { metadata: { name: this.node }, status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] } });
		for (const [ns, labels] of Object.entries(namespaces)) await this.api.put(NAMESPACES, namespaceObject(ns, labels));
		for (const p of pods) await this.api.put(PODS, podObject(this.node, p.namespace, p.name, p.ip));
		this.zt = await Ztunnel.start(this.lab.topo.nodeNs, this.children);
		this.agent = new AgentProcess({
			node: this.node,
			nodeNs: this.nodeNs,
			work: this.work,
			pinRoot: this.pinRoot,
			cgroup: this.lab.cgroup,
			api: this.api,
			children: this.children,
			endpoints: pods.map((p) => ({ namespace: p.namespace, pod: p.name, ip: p.ip, epId: p.epId, ifindex: this.lab.pod(p.name).hostIfindex })),
		});
	}

	/** Idempotent: the agent, every process, the routing, the pins, the namespaces, the work directory. */
	async destroy(): Promise<void> {
		try {
			await this.agent?.stop().catch(() => undefined);
			for (const c of this.children) c.kill('SIGKILL');
			await this.zt?.kill();
			this.dp?.close();
			this.dp = undefined;
			if (this.nodeNs && existsSync(this.nodeNs)) await removeCaptureRouting(this.nodeNs);
		} finally {
			try {
				if (existsSync(this.pinRoot)) uninstallPins(this.pinRoot);
				removePinRoot(this.pinRoot);
			} finally {
				await this.lab?.destroy();
				if (this.work && !process.env['WEIR_KEEP_TEST_DIR']) rmSync(this.work, { recursive: true, force: true });
			}
		}
	}
}
