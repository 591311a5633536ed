// A real kube-apiserver and a real weir-agent reading it, for the benchmarks that time
// an API write until its entry is in a pinned map (policy, services): etcd and
// kube-apiserver from the upstream binaries (the local cluster's control-plane mode,
// 127.0.0.1 only), and dist/src/agent/main.js run as the DaemonSet runs it (its V8 and
// malloc settings) with a test pin root, a work directory and, on request, an empty
// cgroup of its own for the socket load balancer. destroy() removes all of it — the
// agent (the one process this module started), the pins and links, the cgroup, the
// cluster with its etcd data, the work directory — also after a failed start, and
// when the benchmark is interrupted (SIGINT, SIGTERM).
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { Agent, request, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { uninstallPins } from '../src/kernel/datapath.js';
import type { LocalEndpoint } from '../src/shared/endpoint.js';
import { repoRoot } from '../src/shared/package.js';
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../src/agent/runtime.js';
import { freePort, startCluster, type Cluster } from '../hack/cluster/cluster.js';
import { readState } from '../hack/cluster/resources.js';
import { ensureBpffs, requireRoot, testPinRoot } from '../test/helpers/bpf.js';
import { CGROUP2_ROOT } from '../test/helpers/lb-lab.js';

const AGENT = resolve(repoRoot, 'dist/src/agent/main.js');

export interface AgentOptions {
	/** the node the agent runs as (--node-name) */
	node: string;
	/** its local pods, as the CNI would have registered them (--endpoints-file) */
	endpoints?: ReadonlyArray<Omit<LocalEndpoint, 'netns'>>;
	/**
	 * Socket load balancer on, attached to an empty cgroup made for this lab (no process
	 * is ever translated). Off (the default): --kube-proxy-replacement false, since a host
	 * process's own cgroup is the machine's root.
	 */
	socketLb?: boolean;
	/** pino level of the agent's log, which goes to this process's stderr (default warn) */
	logLevel?: string;
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime. */
let clkTck: number | undefined;

/** User + system CPU seconds a process has used so far (/proc/<pid>/stat). */
export function cpuSeconds(pid: number): number {
	const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
	const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
	clkTck ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
	return (Number(fields[11]) + Number(fields[12])) / clkTck; // utime (14th), stime (15th)
}

/** Runs `f` over `items` with at most `n` calls in flight, as fast as they complete. */
export async function inFlight<T>(items: readonly T[], n: number, f: (item: T, index: number) => Promise<unknown>): Promise<void> {
	let next = 0;
	const worker = async (): Promise<void> => {
		while (next < items.length) {
			const i = next++;
			await f(items[i]!, i);
		}
	};
	await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}

/**
 * JSON requests to an API server over kept-alive TLS connections, for writes timed as
 * the API server's own: client-node builds a new https.Agent for every call, so each one
 * pays a TLS handshake (client certificate included) on both sides.
 */
export class ApiClient {
	private constructor(
		private readonly server: URL,
		private readonly agent: Agent,
	) {}

	/** The kubeconfig's current cluster and user; at most `sockets` connections. */
	static async open(kc: k8s.KubeConfig, sockets: number): Promise<ApiClient> {
		const opts: RequestOptions = {};
		await kc.applyToHTTPSOptions(opts);
		const server = kc.getCurrentCluster()?.server;
		if (!server) throw new Error('the kubeconfig names no server');
		return new ApiClient(new URL(server), new Agent({ keepAlive: true, maxSockets: sockets, ca: opts.ca, cert: opts.cert, key: opts.key }));
	}

	/** Sends `body` as JSON (or as `contentType`, e.g. a merge patch); resolves to the answer, rejects on a status >= 300. */
	send<T = unknown>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
		const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
		return new Promise<T>((res, rej) => {
			const req = request(
				new URL(path, this.server),
				{ method, agent: this.agent, headers: { accept: 'application/json', ...(data ? { 'content-type': contentType, 'content-length': data.length } : {}) } },
				(r) => {
					const chunks: Buffer[] = [];
					r.on('data', (c: Buffer) => chunks.push(c));
					r.on('error', rej);
					r.on('end', () => {
						const text = Buffer.concat(chunks).toString('utf8');
						if ((r.statusCode ?? 0) >= 300) rej(new Error(`${method} ${path}: ${r.statusCode} ${text.slice(0, 300)}`));
						else res((text ? JSON.parse(text) : undefined) as T);
					});
				},
			);
			req.on('error', rej);
			req.end(data);
		});
	}

	close(): void {
		this.agent.destroy();
	}
}

export class ApiAgentLab {
	cluster: Cluster | undefined;
	readonly kc = new k8s.KubeConfig();
	pinRoot = '';
	work = '';
	cgroup = '';
	observerPort = 0;
	agent: ChildProcess | undefined;
	private readonly onSignal = (sig: NodeJS.Signals): void => {
		process.stderr.write(`${sig}: cleaning up\n`);
		void this.destroy().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
	};

	private constructor(
		private readonly clusterName: string,
		private readonly tag: string,
	) {}

	/** The API server ready (cluster names the local cluster, tag the pin root); on failure whatever was made is removed. */
	static async start(clusterName: string, tag: string): Promise<ApiAgentLab> {
		requireRoot();
		ensureBpffs();
		const lab = new ApiAgentLab(clusterName, tag);
		process.once('SIGINT', lab.onSignal);
		process.once('SIGTERM', lab.onSignal);
		try {
			lab.work = mkdtempSync(join(tmpdir(), `weir-${tag}-`));
			lab.pinRoot = testPinRoot(tag);
			lab.cluster = await startCluster({ name: clusterName, mode: 'control-plane', log: () => undefined });
			lab.kc.loadFromFile(lab.cluster.kubeconfig);
		} catch (err) {
			await lab.destroy();
			throw err;
		}
		return lab;
	}

	/** The pid of one of the cluster's processes ('kube-apiserver', 'etcd'). */
	componentPid(name: string): number {
		const p = readState(this.clusterName)?.processes.find((x) => x.name === name);
		if (!p) throw new Error(`no ${name} in cluster ${this.clusterName}`);
		return p.pid;
	}

	/** Starts weir-agent and waits until /readyz answers 200; returns the seconds that took. */
	async startAgent(o: AgentOptions): Promise<number> {
		if (!this.cluster) throw new Error('the lab cluster did not start');
		if (this.agent) throw new Error('the agent is already running');
		const endpointsFile = join(this.work, 'endpoints.json');
		writeFileSync(endpointsFile, JSON.stringify(o.endpoints ?? []));
		const lbArgs = ['--kube-proxy-replacement', 'false'];
		if (o.socketLb) {
			this.cgroup ||= `${CGROUP2_ROOT}/weir-bench-${this.tag}-${process.pid}`;
			mkdirSync(this.cgroup, { recursive: true });
			lbArgs.splice(0, 2, '--kube-proxy-replacement', 'true', '--cgroup-root', this.cgroup);
		}
		this.observerPort = await freePort(); // fixed ports collide with other labs on this machine
		const t0 = performance.now();
		const agent = (this.agent = spawn(
			process.execPath,
			[
				...AGENT_NODE_FLAGS,
				AGENT,
				...lbArgs,
				// A host process: its capture routing would go into the machine's own namespace.
				'--mesh',
				'false',
				'--node-name',
				o.node,
				'--pin-root',
				this.pinRoot,
				'--kubeconfig',
				this.cluster.kubeconfig,
				'--endpoints-file',
				endpointsFile,
				'--ztunnel-flow-socket',
				join(this.work, 'ztunnel', 'flows.sock'),
				'--observer-host',
				'127.0.0.1',
				'--observer-port',
				String(this.observerPort),
				'--log-level',
				o.logLevel ?? 'warn',
			],
			{ stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...AGENT_ENV } },
		));
		for (;;) {
			if (agent.exitCode !== null || agent.signalCode !== null) throw new Error(`weir-agent exited (${agent.exitCode ?? agent.signalCode}); its log is above`);
			try {
				if ((await fetch(`http://127.0.0.1:${this.observerPort}/readyz`)).ok) break;
			} catch {
				/* starting */
			}
			if (performance.now() - t0 > 60_000) throw new Error('weir-agent did not become ready within 60 s');
			await new Promise((r) => setTimeout(r, 50));
		}
		return (performance.now() - t0) / 1000;
	}

	get agentPid(): number {
		if (this.agent?.pid === undefined) throw new Error('the agent is not running');
		return this.agent.pid;
	}

	/** The agent's resident memory (MB). */
	agentRssMb(): number {
		return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${this.agentPid}/status`, 'utf8'))![1]) / 1024;
	}

	async stopAgent(): Promise<void> {
		const a = this.agent;
		this.agent = undefined;
		if (!a || a.exitCode !== null || a.signalCode !== null) return;
		const exited = new Promise((r) => a.once('exit', r));
		a.kill('SIGKILL');
		await exited;
	}

	/** Idempotent; every step runs even when an earlier one failed. */
	async destroy(): Promise<void> {
		process.off('SIGINT', this.onSignal);
		process.off('SIGTERM', this.onSignal);
		const problems: string[] = [];
		const step = async (what: string, f: () => unknown): Promise<void> => {
			try {
				await f();
			} catch (err) {
				problems.push(`${what}: ${(err as Error).message}`);
			}
		};
		await step('stop the agent', () => this.stopAgent());
		if (this.pinRoot) {
			// Detaches the socket load balancer's cgroup links (and any pod link), then removes the pins.
			await step('remove the pins', () => problems.push(...uninstallPins(this.pinRoot).warnings));
			this.pinRoot = '';
		}
		if (this.cgroup) {
			const dir = this.cgroup;
			await step('remove the cgroup', () => existsSync(dir) && rmdirSync(dir));
			this.cgroup = '';
		}
		const c = this.cluster;
		this.cluster = undefined;
		if (c) await step('stop the cluster', async () => problems.push(...(await c.stop()).left));
		if (this.work) rmSync(this.work, { recursive: true, force: true });
		this.work = '';
		if (problems.length) process.stderr.write(`cleanup left: ${problems.join('; ')}\n`);
	}
}
