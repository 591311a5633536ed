// A lab for the socket load balancer: lab namespaces (hack/lab/topology.ts), a
// cgroup v2 directory for the programs, identifying servers and client processes
// (hack/lab/lb-probe.ts) that join the cgroup before they open a socket, or stay
// outside it. destroy() removes every process, namespace and the cgroup, also after
// a failed test.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { repoRoot } from '../../src/shared/package.js';
import { Topology, nsExec, type Pod } from '../../hack/lab/topology.js';
import type { BenchAnswer, LbRequest, LoopAnswer, TcpAnswer, UdpAnswer } from '../../hack/lab/lb-probe.js';

export const lbProbeScript = resolve(repoRoot, 'dist/hack/lab/lb-probe.js');
/** cgroup v2 on this machine (hybrid hierarchy: the unified one). */
export const CGROUP2_ROOT = '/sys/fs/cgroup/unified';

/** Omit over each member of a union. */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** A client process in a pod namespace, answering lb-probe requests one at a time. */
export class LbClient {
	private next = 0;
	private readonly waiting = new Map<number, { res: (a: unknown) => void; rej: (e: Error) => void }>();

	constructor(
		readonly pod: Pod,
		readonly inCgroup: boolean,
		readonly child: ChildProcess,
	) {
		createInterface({ input: child.stdout! }).on('line', (line) => {
			const a = JSON.parse(line) as { id: number };
			this.waiting.get(a.id)?.res(a);
			this.waiting.delete(a.id);
		});
		child.once('exit', (code, signal) => {
			for (const w of this.waiting.values()) w.rej(new Error(`client in ${pod.name} exited (${code ?? signal})`));
			this.waiting.clear();
		});
	}

	private ask<T>(req: WithoutId<LbRequest>): Promise<T> {
		const id = this.next++;
		return new Promise<T>((res, rej) => {
			this.waiting.set(id, { res: res as (a: unknown) => void, rej });
			this.child.stdin!.write(`${JSON.stringify({ ...req, id })}\n`);
		});
	}

	tcp(ip: string, port: number, timeout = 1000): Promise<TcpAnswer> {
		return this.ask({ op: 'tcp', ip, port, timeout });
	}

	/** `count` datagrams on one socket; a named `sock` stays open for later calls. */
	udp(ip: string, port: number, opts: { count?: number; timeout?: number; sock?: string } = {}): Promise<UdpAnswer> {
		return this.ask({ op: 'udp', ip, port, ...opts });
	}

	loop(ip: string, port: number, ms: number): Promise<LoopAnswer> {
		return this.ask({ op: 'tcploop', ip, port, ms });
	}

	bench(ip: string, port: number, n: number): Promise<BenchAnswer> {
		return this.ask({ op: 'tcpbench', ip, port, n });
	}
}

export class LbLab {
	private readonly children = new Set<ChildProcess>();

	private constructor(
		readonly topo: Topology,
		readonly cgroup: string,
	) {}

	/** A topology with these pods and an empty cgroup `weir-test-<tag>-<pid>` under the cgroup v2 root. */
	static async create(tag: string, pods: ReadonlyArray<{ name: string; ip: string }>): Promise<LbLab> {
		const cgroup = `${CGROUP2_ROOT}/weir-test-${tag}-${process.pid}`;
		const topo = Topology.create(0);
		const lab = new LbLab(topo, cgroup);
		try {
			for (const p of pods) topo.addPod(p.name, p.ip);
			mkdirSync(cgroup);
		} catch (err) {
			await lab.destroy();
			throw err;
		}
		return lab;
	}

	pod(name: string): Pod {
		return this.topo.pod(name);
	}

	/**
	 * Routes `cidr` from the node to `pod`, which takes every address in it as its own
	 * (a `local` route, no interface address): connects that reach it untranslated are
	 * answered by whatever it serves, or refused by its kernel (RST).
	 */
	sink(pod: Pod, cidr: string): void {
		nsExec(this.topo.nodeNs, ['ip', 'route', 'add', cidr, 'via', pod.ip, 'dev', pod.hostIf]);
		nsExec(pod.netns, ['ip', 'route', 'add', 'local', cidr, 'dev', 'lo']);
	}

	private track(child: ChildProcess): ChildProcess {
		this.children.add(child);
		child.on('exit', () => this.children.delete(child));
		return child;
	}

	/** An identifying server (TCP and UDP) on each port in a pod; resolves once it listens. */
	async ident(pod: Pod, name: string, ports: readonly number[]): Promise<void> {
		const child = this.track(
			spawn('ip', ['netns', 'exec', pod.netns, process.execPath, lbProbeScript, 'ident', name, ports.join(',')], { stdio: ['ignore', 'pipe', 'inherit'] }),
		);
		await new Promise<void>((res, rej) => {
			const timer = setTimeout(() => rej(new Error(`server ${name} in ${pod.name} did not start`)), 10_000);
			child.stdout!.once('data', () => {
				clearTimeout(timer);
				res();
			});
			child.once('exit', (code) => {
				clearTimeout(timer);
				rej(new Error(`server ${name} in ${pod.name} exited with ${code}`));
			});
		});
	}

	/**
	 * A client process in a pod. In the cgroup: the shell writes its own pid into
	 * cgroup.procs, then becomes the client (`ip netns exec` remounts /sys in a mount
	 * namespace of its own, so the cgroup is joined before it runs).
	 */
	client(pod: Pod, opts: { inCgroup: boolean }): LbClient {
		const child = opts.inCgroup
			? spawn(
					'sh',
					['-c', 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$1" "$2" "$3" client', this.cgroup, pod.netns, process.execPath, lbProbeScript],
					{
						stdio: ['pipe', 'pipe', 'inherit'],
					},
				)
			: spawn('ip', ['netns', 'exec', pod.netns, process.execPath, lbProbeScript, 'client'], { stdio: ['pipe', 'pipe', 'inherit'] });
		return new LbClient(pod, opts.inCgroup, this.track(child));
	}

	/** The pids in the lab's cgroup. */
	cgroupPids(): number[] {
		if (!existsSync(this.cgroup)) return [];
		return readFileSync(`${this.cgroup}/cgroup.procs`, 'utf8').split('\n').filter(Boolean).map(Number);
	}

	/** Kills the lab's processes and removes its namespaces and cgroup. Idempotent. */
	async destroy(): Promise<void> {
		const exits = [...this.children].map((c) => new Promise((res) => (c.exitCode !== null || c.signalCode !== null ? res(null) : c.once('exit', res))));
		for (const c of this.children) c.kill('SIGKILL');
		await Promise.all(exits);
		this.topo.destroy();
		if (existsSync(this.cgroup)) {
			// Anything left inside (only our own clients can be) goes with cgroup.kill.
			if (this.cgroupPids().length) writeFileSync(`${this.cgroup}/cgroup.kill`, '1');
			for (let i = 0; i < 100 && this.cgroupPids().length; i++) await new Promise((r) => setTimeout(r, 20));
			rmdirSync(this.cgroup);
		}
	}
}
