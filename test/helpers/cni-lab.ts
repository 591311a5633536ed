// A CNI lab for runtime tests and the benchmark: a node network namespace (no route
// to the uplink), a CNI conf dir and bin dir (weir-cni, host-local, portmap, ptp), a
// host-local state dir, a pin root, and the standalone CNI server (hack/lab/cni-server.ts)
// serving the socket with its host side in the node namespace. Real callers: cnitool
// (run inside the node namespace, so chained plugins such as portmap touch only it)
// and the weir-cni executable itself. destroy() removes everything, also after a failure.
import { ChildProcess, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { native } from '../../src/kernel/addon.js';
import { Netlink } from '../../src/kernel/netlink.js';
import { repoRoot } from '../../src/shared/package.js';
import { runProcess } from '../../src/shared/process.js';
import { sh } from '../../hack/lab/topology.js';

export const CNITOOL = process.env['WEIR_CNITOOL'] ?? '/var/cache/weir/cni-v1.3.1/bin/cnitool';
export const DEBIAN_CNI = '/usr/lib/cni';
const WEIR_CNI = resolve(repoRoot, 'build/cni/weir-cni');
const NODE_MAIN = resolve(repoRoot, 'dist/hack/lab/cni-server.js');

export interface Exec {
	code: number;
	stdout: string;
	stderr: string;
	/** stdout parsed as JSON (undefined if it is not JSON) */
	json: Record<string, unknown> | undefined;
}

export async function run(cmd: string, args: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<Exec> {
	const r = await runProcess(cmd, args, { ...opts, timeoutMs: opts.timeoutMs ?? 60_000 });
	let json: Record<string, unknown> | undefined;
	try {
		json = JSON.parse(r.stdout) as Record<string, unknown>;
	} catch {
		json = undefined;
	}
	return { code: r.code, stdout: r.stdout, stderr: r.stderr, json };
}

let counter = 0;

export interface LabOptions {
	cniVersion?: string;
	/** chain portmap after weir (default true) */
	portmap?: boolean;
	/** host-local range */
	subnet?: string;
	/** IPAM plugin name in the bin dir (default host-local) */
	ipamType?: string;
	/** the agent writes endpoints open (not isolated) with this identity; default fail-closed init */
	openIdentity?: number;
}

export class CniLab {
	readonly dir: string;
	readonly confDir: string;
	readonly binDir: string;
	readonly ipamDir: string;
	readonly socket: string;
	readonly stateFile: string;
	readonly pinRoot: string;
	readonly nodeNs: string;
	readonly network: string;
	private agent: ChildProcess | undefined;
	private agentLog = '';
	private readonly podNs = new Set<string>();
	readonly node: Netlink;

	private constructor(
		readonly id: string,
		readonly opts: Required<Omit<LabOptions, 'openIdentity'>> & { openIdentity?: number },
	) {
		this.dir = `/tmp/weir-test-cni-${id}`;
		this.confDir = join(this.dir, 'conf');
		this.binDir = join(this.dir, 'bin');
		this.ipamDir = join(this.dir, 'ipam');
		this.socket = join(this.dir, 'cni.sock');
		this.stateFile = join(this.dir, 'state', 'endpoints.json');
		this.pinRoot = `/sys/fs/bpf/weir-test-cni-${id}`;
		this.nodeNs = `wcni-${id}-node`;
		this.network = `weir-${id}`;
		this.node = new Netlink(`/run/netns/${this.nodeNs}`);
	}

	static create(opts: LabOptions = {}): CniLab {
		if (process.getuid?.() !== 0) throw new Error('the CNI runtime tests need root (network namespaces, bpffs)');
		const id = `${process.pid % 100000}-${counter++}`;
		const lab = new CniLab(id, {
			cniVersion: opts.cniVersion ?? '1.0.0',
			portmap: opts.portmap ?? true,
			subnet: opts.subnet ?? '10.77.0.0/24',
			ipamType: opts.ipamType ?? 'host-local',
			...(opts.openIdentity !== undefined ? { openIdentity: opts.openIdentity } : {}),
		});
		try {
			for (const d of [lab.confDir, lab.binDir, lab.ipamDir]) mkdirSync(d, { recursive: true });
			copyFileSync(WEIR_CNI, join(lab.binDir, 'weir-cni'));
			chmodSync(join(lab.binDir, 'weir-cni'), 0o755);
			for (const p of ['host-local', 'portmap', 'ptp', 'loopback']) symlinkSync(join(DEBIAN_CNI, p), join(lab.binDir, p));
			lab.writeConflist();
			sh('ip', ['netns', 'add', lab.nodeNs]);
			sh('ip', ['netns', 'exec', lab.nodeNs, 'ip', 'link', 'set', 'lo', 'up']);
			// The node's address, TEST-NET-1 on lo; forwarding between pods only.
			sh('ip', ['netns', 'exec', lab.nodeNs, 'ip', 'addr', 'add', '192.0.2.1/32', 'dev', 'lo']);
			sh('ip', ['netns', 'exec', lab.nodeNs, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
		} catch (err) {
			lab.destroy();
			throw err;
		}
		return lab;
	}

	/** The conflist the runtime reads (weir, then portmap when chained). */
	conflist(overrides: Record<string, unknown> = {}): Record<string, unknown> {
		const weir = {
			type: 'weir-cni',
			agentSocket: this.socket,
			ipam: { type: this.opts.ipamType, ranges: [[{ subnet: this.opts.subnet }]], dataDir: this.ipamDir },
			...overrides,
		};
		const plugins: Array<Record<string, unknown>> = [weir];
		if (this.opts.portmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true }, snat: true });
		return { cniVersion: this.opts.cniVersion, name: this.network, plugins };
	}

	/** The single-plugin network config as the runtime hands it to weir-cni. */
	netconf(overrides: Record<string, unknown> = {}): Record<string, unknown> {
		const l = this.conflist(overrides);
		return { cniVersion: l['cniVersion'], name: l['name'], ...(l['plugins'] as Array<Record<string, unknown>>)[0] };
	}

	writeConflist(overrides: Record<string, unknown> = {}): void {
		writeFileSync(join(this.confDir, '10-weir.conflist'), JSON.stringify(this.conflist(overrides), null, 1));
	}

	/** Starts the CNI node; resolves once it serves the socket. */
	async startAgent(): Promise<void> {
		const args = [
			'--enable-source-maps',
			NODE_MAIN,
			'--pin-root',
			this.pinRoot,
			'--socket',
			this.socket,
			'--state',
			this.stateFile,
			'--host-netns',
			`/run/netns/${this.nodeNs}`,
			'--log-level',
			'warn',
		];
		if (this.opts.openIdentity !== undefined) args.push('--identity', String(this.opts.openIdentity), '--open');
		const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UV_THREADPOOL_SIZE: '16' } });
		this.agent = child;
		child.stderr!.on('data', (d: Buffer) => {
			if (process.env['WEIR_PROF']) process.stderr.write(d);
			this.agentLog = (this.agentLog + d.toString()).slice(-20000);
		});
		await new Promise<void>((res, rej) => {
			const timer = setTimeout(() => rej(new Error(`CNI node did not start: ${this.agentLog}`)), 20_000);
			child.stdout!.once('data', () => {
				clearTimeout(timer);
				res();
			});
			child.once('exit', (code) => {
				clearTimeout(timer);
				rej(new Error(`CNI node exited with ${code}: ${this.agentLog}`));
			});
		});
	}

	get agentPid(): number | undefined {
		return this.agent?.pid;
	}

	get log(): string {
		return this.agentLog;
	}

	/** Stops (SIGTERM) or kills (SIGKILL) the CNI node we started, by its pid. */
	async stopAgent(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
		const a = this.agent;
		this.agent = undefined;
		if (!a || a.exitCode !== null || a.signalCode !== null) return;
		await new Promise<void>((res) => {
			a.once('exit', () => res());
			a.kill(signal);
		});
	}

	/** A pod network namespace, removed by destroy(). Returns its path. */
	addPodNs(name: string): string {
		const ns = `wcni-${this.id}-${name}`;
		sh('ip', ['netns', 'add', ns]);
		this.podNs.add(ns);
		return `/run/netns/${ns}`;
	}

	delPodNs(path: string): void {
		const ns = path.split('/').pop()!;
		sh('ip', ['netns', 'del', ns], { allowFail: true });
		this.podNs.delete(ns);
	}

	/** cnitool in the node namespace, on this lab's conf and bin dirs. */
	cnitool(
		cmd: 'add' | 'check' | 'del' | 'gc' | 'status',
		netnsPath: string,
		opts: { capArgs?: object; cniArgs?: string; ifname?: string } = {},
	): Promise<Exec> {
		const env: Record<string, string> = {
			PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
			NETCONFPATH: this.confDir,
			CNI_PATH: this.binDir,
		};
		if (opts.capArgs) env['CAP_ARGS'] = JSON.stringify(opts.capArgs);
		if (opts.cniArgs) env['CNI_ARGS'] = opts.cniArgs;
		if (opts.ifname) env['CNI_IFNAME'] = opts.ifname;
		const args = ['netns', 'exec', this.nodeNs, CNITOOL, cmd, this.network];
		if (cmd !== 'gc') args.push(netnsPath || '/run/netns/none');
		return run('ip', args, { env });
	}

	/** weir-cni invoked directly, as a runtime would: env + stdin. */
	plugin(env: Record<string, string>, stdin: string, bin = join(this.binDir, 'weir-cni')): Promise<Exec> {
		// WEIR_CNI_SOCKET: where the forwarder goes when the config names no agentSocket (malformed input).
		return run(bin, [], { env: { CNI_PATH: this.binDir, WEIR_CNI_SOCKET: this.socket, ...env }, input: stdin });
	}

	// ---- leak inspection -------------------------------------------------------------

	async hostVeths(): Promise<string[]> {
		return (await this.node.links()).filter((l) => l.name.startsWith('lxc')).map((l) => l.name);
	}

	/** host-local's allocations (files named by address) */
	ipamAllocations(): string[] {
		const d = join(this.ipamDir, this.network);
		if (!existsSync(d)) return [];
		return readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
	}

	linkPins(): string[] {
		const d = join(this.pinRoot, 'links');
		return existsSync(d) ? readdirSync(d) : [];
	}

	endpointKeys(): number {
		const p = join(this.pinRoot, 'weir_endpoints');
		if (!existsSync(p)) return 0;
		const m = native().openPinnedMap(p);
		try {
			return m.keys().length;
		} finally {
			m.close();
		}
	}

	async hostRoutes(): Promise<string[]> {
		return (await this.node.routes()).filter((r) => r.dst.startsWith(this.opts.subnet.split('.').slice(0, 2).join('.'))).map((r) => r.dst);
	}

	destroy(): void {
		const errors: string[] = [];
		const step = (fn: () => void): void => {
			try {
				fn();
			} catch (err) {
				errors.push((err as Error).message);
			}
		};
		if (this.agent && this.agent.exitCode === null) step(() => this.agent!.kill('SIGKILL'));
		for (const ns of this.podNs) step(() => sh('ip', ['netns', 'del', ns], { allowFail: true }));
		this.podNs.clear();
		step(() => sh('ip', ['netns', 'del', this.nodeNs], { allowFail: true }));
		step(() => rmSync(this.pinRoot, { recursive: true, force: true }));
		step(() => rmSync(this.dir, { recursive: true, force: true }));
		if (errors.length) throw new Error(`lab cleanup: ${errors.join('; ')}`);
	}
}

/** The pod's address from an ADD result (any version). */
export function resultIp(r: Record<string, unknown> | undefined): string {
	const ips = (r?.['ips'] ?? []) as Array<{ address: string }>;
	const a = ips[0]?.address;
	if (!a) throw new Error(`no address in result ${JSON.stringify(r)}`);
	return a.split('/')[0]!;
}

/** ping from a pod namespace (path) to an address; true if answered. */
export async function ping(netnsPath: string, ip: string, timeoutSec = 2): Promise<boolean> {
	const ns = netnsPath.split('/').pop()!;
	const r = await run('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-w', String(timeoutSec), '-q', ip]);
	return r.code === 0;
}
