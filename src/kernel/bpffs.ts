// bpffs: where the datapath pins its maps and links.
import { execFileSync } from 'node:child_process';
import { mkdirSync, statfsSync } from 'node:fs';
import { DEFAULTS } from '../shared/defaults.js';

export const BPF_FS_MAGIC = 0xcafe4a11;
export const BPFFS_ROOT: string = DEFAULTS.bpffsRoot;

export function isBpffs(dir: string): boolean {
	try {
		return statfsSync(dir).type === BPF_FS_MAGIC;
	} catch {
		return false;
	}
}

/** Mounts bpffs at /sys/fs/bpf when it is missing, as the agent's init step does. */
export function ensureBpffs(root = BPFFS_ROOT): void {
	mkdirSync(root, { recursive: true });
	if (!isBpffs(root)) execFileSync('mount', ['-t', 'bpf', 'bpf', root]);
}

/** Root is required for the datapath; say so plainly instead of failing on EPERM later. */
export function requireRoot(): void {
	if (process.getuid?.() !== 0) {
		throw new Error('this needs root (BPF programs, network namespaces): run it as root');
	}
}
