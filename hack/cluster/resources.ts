// Everything a cluster makes on the host is named after the cluster, so a stop (or the
// next start after a crash) finds and removes it by name: network namespaces
// `weir-<name>-*`, cgroups `weir-<name>` (v2 and each v1 hierarchy), and the directory
// /var/lib/weir-cluster/<name>. Processes are killed through the cgroup v2 tree the
// harness created, so only processes it started are ever signalled.
import { existsSync, readdirSync, readFileSync, rmSync, rmdirSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pidAlive, run, sleep } from './exec.js';

export const STATE_ROOT = process.env['WEIR_CLUSTER_ROOT'] ?? '/var/lib/weir-cluster';
export const CGROUP_V2 = '/sys/fs/cgroup/unified';
export const CGROUP_V1 = '/sys/fs/cgroup';

export function clusterDir(name: string): string {
	return join(STATE_ROOT, name);
}

export function netnsPrefix(name: string): string {
	return `weir-${name}-`;
}

export function cgroupV2Dir(name: string, group?: string): string {
	return group ? join(CGROUP_V2, `weir-${name}`, group) : join(CGROUP_V2, `weir-${name}`);
}

/** v1 hierarchies (directories under /sys/fs/cgroup that are cgroup v1 mounts). */
export function v1Hierarchies(): string[] {
	const out: string[] = [];
	for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
		const f = line.split(' ');
		const sep = f.indexOf('-');
		if (sep < 0 || f[sep + 1] !== 'cgroup') continue;
		const mp = f[4];
		if (mp && mp.startsWith(CGROUP_V1 + '/')) out.push(mp);
	}
	return out;
}

export interface ProcessRecord {
	name: string;
	pid: number;
	group: string;
}

export interface ClusterState {
	name: string;
	mode: 'control-plane' | 'cluster';
	dir: string;
	kubeconfig: string;
	logDir: string;
	server: string;
	startedAt: string;
	ready: boolean;
	processes: ProcessRecord[];
	nodes: { name: string; netns: string; nodeIP: string; podCIDR: string; holderPid: number }[];
}

/**
 * Directories created on the host only to serve as mount points inside node mount
 * namespaces (/etc/cni/net.d, /var/lib/kubelet, ...). Shared by all clusters: the last
 * cluster to stop removes them.
 */
const HOST_DIRS_FILE = join(STATE_ROOT, '.host-dirs');

export function readHostDirs(): string[] {
	try {
		return readFileSync(HOST_DIRS_FILE, 'utf8').split('\n').filter(Boolean);
	} catch {
		return [];
	}
}

export function recordHostDir(dir: string): void {
	mkdirSync(STATE_ROOT, { recursive: true });
	writeFileSync(HOST_DIRS_FILE, [...readHostDirs(), dir].join('\n') + '\n');
}

/** Clusters with a state file (a directory holding only the logs of a failed start is not one). */
export function runningClusters(): string[] {
	try {
		return readdirSync(STATE_ROOT).filter((e) => !e.startsWith('.') && existsSync(join(STATE_ROOT, e, 'state.json')));
	} catch {
		return [];
	}
}

export function stateFile(name: string): string {
	return join(clusterDir(name), 'state.json');
}

export function readState(name: string): ClusterState | undefined {
	try {
		return JSON.parse(readFileSync(stateFile(name), 'utf8')) as ClusterState;
	} catch {
		return undefined;
	}
}

export function writeState(s: ClusterState): void {
	mkdirSync(s.dir, { recursive: true });
	writeFileSync(stateFile(s.name), JSON.stringify(s, null, 2) + '\n');
}

export async function listNetns(): Promise<string[]> {
	const { stdout } = await run('ip', ['netns', 'list'], { allowFail: true });
	return stdout
		.split('\n')
		.map((l) => l.split(' ')[0] ?? '')
		.filter((n) => n !== '');
}

function cgroupPids(dir: string): number[] {
	const pids: number[] = [];
	const walk = (d: string): void => {
		try {
			for (const l of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l) pids.push(Number(l));
			for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
		} catch {
			/* gone */
		}
	};
	walk(dir);
	return pids;
}

/** Removes a cgroup tree bottom-up (it must hold no processes). Returns what it could not remove. */
function rmCgroupTree(dir: string): string[] {
	if (!existsSync(dir)) return [];
	const left: string[] = [];
	for (const e of readdirSync(dir, { withFileTypes: true })) {
		if (e.isDirectory()) left.push(...rmCgroupTree(join(dir, e.name)));
	}
	try {
		rmdirSync(dir);
	} catch {
		left.push(dir);
	}
	return left;
}

export interface TeardownReport {
	killed: number;
	left: string[];
}

/**
 * Removes every resource of cluster `name`, whether it is running, half-started or
 * crashed. Idempotent. `keepLogs` leaves <dir>/logs in place.
 */
export async function teardown(name: string, opts: { keepLogs?: boolean } = {}): Promise<TeardownReport> {
	const state = readState(name);
	const left: string[] = [];
	const root = cgroupV2Dir(name);
	let killed = 0;

	// 1. Processes: everything in our cgroup v2 tree (daemons, containerd shims,
	//    containers), then any recorded PID that somehow is not in it.
	for (let attempt = 0; attempt < 50; attempt++) {
		const pids = cgroupPids(root);
		if (pids.length === 0) break;
		if (attempt === 0) killed = pids.length;
		const walk = (d: string): void => {
			try {
				writeFileSync(join(d, 'cgroup.kill'), '1');
			} catch {
				/* gone */
			}
		};
		if (existsSync(root)) walk(root);
		await sleep(100);
	}
	for (const p of state?.processes ?? []) {
		if (pidAlive(p.pid) && !isZombie(p.pid) && isOurs(p.pid, name)) {
			try {
				process.kill(p.pid, 'SIGKILL');
				killed++;
			} catch {
				/* already gone */
			}
		}
	}
	const stubborn = cgroupPids(root);
	if (stubborn.length > 0) left.push(`processes still alive in ${root}: ${stubborn.join(' ')}`);

	// 2. cgroups: ours in v2, and the v1 trees kubelet made under its cgroupRoot.
	for (let attempt = 0; attempt < 20; attempt++) {
		const rest = [...rmCgroupTree(root), ...v1Hierarchies().flatMap((h) => rmCgroupTree(join(h, `weir-${name}`)))];
		if (rest.length === 0) break;
		if (attempt === 19) left.push(...rest.map((r) => `cgroup ${r}`));
		await sleep(200);
	}

	// 3. Network namespaces (their veths and bridges go with them).
	for (const ns of await listNetns()) {
		if (!ns.startsWith(netnsPrefix(name))) continue;
		const r = await run('ip', ['netns', 'del', ns], { allowFail: true });
		if (r.code !== 0) left.push(`netns ${ns}: ${r.stderr.trim()}`);
	}

	// 4. Our files, then the host mount-point directories clusters created — only when
	//    no other cluster is left (its nodes mount over them) and only if still empty.
	const dir = clusterDir(name);
	if (existsSync(dir)) {
		if (opts.keepLogs) {
			for (const e of readdirSync(dir)) if (e !== 'logs') rmSync(join(dir, e), { recursive: true, force: true });
		} else {
			rmSync(dir, { recursive: true, force: true });
		}
	}
	if (runningClusters().length === 0) {
		for (const d of readHostDirs().reverse()) {
			try {
				if (readdirSync(d).length === 0) rmdirSync(d);
			} catch {
				/* gone or not empty: leave it */
			}
		}
		rmSync(HOST_DIRS_FILE, { force: true });
		try {
			if (readdirSync(STATE_ROOT).length === 0) rmdirSync(STATE_ROOT);
		} catch {
			/* absent, or logs of a failed start kept */
		}
	}
	// 5. Host mounts that mention our directory (there should be none: node mounts live
	//    in the nodes' own mount namespaces).
	for (const m of hostMountsUnder(dir)) left.push(`mount ${m}`);
	return { killed, left };
}

function isZombie(pid: number): boolean {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
		return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
	} catch {
		return true;
	}
}

/** A PID belongs to this cluster if its cgroup v2 path is under weir-<name>. */
function isOurs(pid: number, name: string): boolean {
	try {
		const cg = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
		return cg.split('\n').some((l) => l.startsWith('0::') && l.includes(`/weir-${name}`));
	} catch {
		return false;
	}
}

export function hostMountsUnder(dir: string): string[] {
	return readFileSync('/proc/self/mountinfo', 'utf8')
		.split('\n')
		.map((l) => l.split(' ')[4] ?? '')
		.filter((mp) => mp === dir || mp.startsWith(dir + '/'));
}

export function dirExists(d: string): boolean {
	try {
		return statSync(d).isDirectory();
	} catch {
		return false;
	}
}

/** What a stopped cluster left on the host; empty when the stop was complete. */
export async function leftovers(name: string, pids: readonly number[] = []): Promise<string[]> {
	const out: string[] = [];
	for (const ns of await listNetns()) if (ns.startsWith(netnsPrefix(name))) out.push(`netns ${ns}`);
	if (existsSync(cgroupV2Dir(name))) out.push(`cgroup ${cgroupV2Dir(name)}`);
	for (const h of v1Hierarchies()) if (existsSync(join(h, `weir-${name}`))) out.push(`cgroup ${join(h, `weir-${name}`)}`);
	if (existsSync(clusterDir(name))) out.push(`dir ${clusterDir(name)}`);
	for (const m of hostMountsUnder(clusterDir(name))) out.push(`mount ${m}`);
	for (const p of pids) if (pidAlive(p) && !isZombie(p)) out.push(`process ${p}`);
	if (runningClusters().length === 0) for (const d of readHostDirs()) if (existsSync(d)) out.push(`host dir ${d}`);
	return out;
}
