// Preparing a host (a Kubernetes node's filesystem) for Weir's agent, and restoring it:
// what weir-host-setup (src/host-setup/main.ts) runs besides the agent itself.
//   init       (init container) mount bpffs if missing, install the weir-cni executable
//              and the IPAM/loopback/portmap plugins Weir chains with when the node has
//              none, create the agent's socket directory.
//   uninstall  (cleanup DaemonSet) detach every pinned Weir program, remove the pins,
//              the capture's routing rule and table, Weir's CNI config, the
//              executables init installed and the socket dir.
// Only what Weir itself put on the node is ever removed: other CNI configs and
// plugins stay as they were.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBpffs, isBpffs } from '../kernel/bpffs.js';
import { detachPinnedLink, uninstallPins } from '../kernel/datapath.js';
import { DEFAULT_CAPTURE_ROUTING as CR, removeCaptureRouting } from '../kernel/capture.js';
import { DEFAULTS } from '../shared/defaults.js';
import { installExecutable } from '../shared/install.js';

export const WEIR_CNI = DEFAULTS.cniExecutable;
import { buildPath, repoRoot } from '../shared/package.js';

/** CNI plugins Weir's conflist chains with (IPAM, loopback, portmap), installed only when missing. */
export const CHAINED_PLUGINS = ['host-local', 'loopback', 'portmap'] as const;
/** Record of the executables init added to the CNI bin dir (so uninstall removes exactly those). */
export const INSTALLED_RECORD = '.weir-installed.json';
/** Weir's own conf files: `NN-weir.conflist` (the agent writes 05-weir.conflist). */
export const WEIR_CONF_RE = /^\d+-weir\.conflist$/;

export interface NodePaths {
	cniBinDir: string;
	cniConfDir: string;
	bpffsRoot: string;
	pinRoot: string;
	runDir: string;
	/** where the image keeps weir-cni and the chained plugins */
	weirCniSource: string;
	pluginSourceDir: string;
}

export const DEFAULT_NODE_PATHS: NodePaths = {
	cniBinDir: DEFAULTS.cniBinDir,
	cniConfDir: DEFAULTS.cniConfDir,
	bpffsRoot: DEFAULTS.bpffsRoot,
	pinRoot: DEFAULTS.pinRoot,
	runDir: DEFAULTS.runDir,
	weirCniSource: buildPath('cni', WEIR_CNI),
	pluginSourceDir: join(repoRoot, 'cni-plugins'),
};

export interface SetupReport {
	actions: string[];
	warnings: string[];
}

function readRecord(binDir: string): string[] {
	try {
		const v = JSON.parse(readFileSync(join(binDir, INSTALLED_RECORD), 'utf8')) as unknown;
		return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && !x.includes('/')) : [];
	} catch {
		return [];
	}
}

/** Prepares a node for the agent. Idempotent; a re-run (agent upgrade) replaces weir-cni atomically. */
export function initNode(p: NodePaths = DEFAULT_NODE_PATHS, mountBpffs: (root: string) => void = ensureBpffs): SetupReport {
	const rep: SetupReport = { actions: [], warnings: [] };
	if (!isBpffs(p.bpffsRoot)) {
		mountBpffs(p.bpffsRoot);
		rep.actions.push(`mounted bpffs at ${p.bpffsRoot}`);
	}
	mkdirSync(p.cniBinDir, { recursive: true });
	mkdirSync(p.cniConfDir, { recursive: true });
	mkdirSync(p.runDir, { recursive: true, mode: 0o750 });
	const record = new Set(readRecord(p.cniBinDir));
	if (existsSync(p.weirCniSource)) {
		installExecutable(p.weirCniSource, p.cniBinDir, WEIR_CNI);
		record.add(WEIR_CNI);
		rep.actions.push(`installed ${join(p.cniBinDir, WEIR_CNI)}`);
	} else {
		rep.warnings.push(`${p.weirCniSource} is not in this image: pods on this node cannot be wired by Weir`);
	}
	for (const plugin of CHAINED_PLUGINS) {
		const dst = join(p.cniBinDir, plugin);
		if (existsSync(dst)) continue; // the node's own plugin wins; never overwritten
		const src = join(p.pluginSourceDir, plugin);
		if (!existsSync(src)) {
			rep.warnings.push(`${dst} is missing and the image has no ${plugin}`);
			continue;
		}
		installExecutable(src, p.cniBinDir, plugin);
		record.add(plugin);
		rep.actions.push(`installed ${dst} (the node had none)`);
	}
	writeFileSync(join(p.cniBinDir, INSTALLED_RECORD), JSON.stringify([...record].sort()) + '\n');
	return rep;
}

/** The kernel operations of an uninstall; tests pass their own. */
export interface UninstallOps {
	/** detaches a pinned link (src/kernel/datapath.ts) */
	detach(path: string): void;
	/** removes the capture's rule and table from this (the node's) network namespace; whether anything was there */
	removeCaptureRouting(): Promise<boolean>;
}

export const KERNEL_UNINSTALL: UninstallOps = { detach: detachPinnedLink, removeCaptureRouting: () => removeCaptureRouting() };

/**
 * Restores the node: programs detached, pins, the capture's routing (the pod programs
 * that marked packets for it are gone first), Weir's CNI conf and executables, socket
 * dir removed.
 */
export async function uninstallNode(p: NodePaths, ops: UninstallOps = KERNEL_UNINSTALL): Promise<SetupReport> {
	const rep: SetupReport = { actions: [], warnings: [] };
	if (existsSync(p.pinRoot)) {
		const r = uninstallPins(p.pinRoot, (path) => ops.detach(path));
		rep.actions.push(...r.detached.map((f) => `detached ${f}`), `removed pins under ${p.pinRoot}`);
		rep.warnings.push(...r.warnings);
	}
	try {
		if (await ops.removeCaptureRouting())
			rep.actions.push(`removed the capture routing (rule pref ${CR.priority} fwmark 0x${CR.mark.toString(16)}/0x${CR.mask.toString(16)}, table ${CR.table})`);
	} catch (err) {
		rep.warnings.push(`the capture routing could not be removed: ${(err as Error).message}`);
	}
	if (existsSync(p.cniConfDir)) {
		for (const f of readdirSync(p.cniConfDir)) {
			if (!WEIR_CONF_RE.test(f)) continue;
			rmSync(join(p.cniConfDir, f), { force: true });
			rep.actions.push(`removed ${join(p.cniConfDir, f)}`);
		}
	}
	const record = readRecord(p.cniBinDir);
	for (const f of new Set([...record, WEIR_CNI])) {
		const path = join(p.cniBinDir, f);
		if (!existsSync(path)) continue;
		rmSync(path, { force: true });
		rep.actions.push(`removed ${path}`);
	}
	rmSync(join(p.cniBinDir, INSTALLED_RECORD), { force: true });
	if (existsSync(p.runDir)) {
		for (const f of readdirSync(p.runDir)) rmSync(join(p.runDir, f), { recursive: true, force: true });
		try {
			rmdirSync(p.runDir);
			rep.actions.push(`removed ${p.runDir}`);
		} catch (err) {
			// A mount point (the node's own /var/run/weir) stays, empty.
			if ((err as { code?: string }).code !== 'EBUSY') throw err;
			rep.actions.push(`emptied ${p.runDir}`);
		}
	}
	return rep;
}
