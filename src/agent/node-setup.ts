#!/usr/bin/env node
// weir-node-setup: what the DaemonSet runs on a node besides the agent itself.
//   init       (init container) mount bpffs if missing, install the weir-cni executable
//              and the IPAM/loopback/portmap plugins Weir chains with when the node has
//              none, create the agent's socket directory.
//   uninstall  (cleanup DaemonSet) detach every pinned Weir program, remove the pins,
//              Weir's CNI config, the executables init installed and the socket dir.
// Only what Weir itself put on the node is ever removed: other CNI configs and
// plugins stay as they were.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { BPFFS_ROOT, ensureBpffs, isBpffs } from '../bpf/bpffs.js';
import { buildPath, repoRoot } from '../paths.js';

export const WEIR_CNI = 'weir-cni';
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
	cniBinDir: '/opt/cni/bin',
	cniConfDir: '/etc/cni/net.d',
	bpffsRoot: BPFFS_ROOT,
	pinRoot: '/sys/fs/bpf/weir',
	runDir: '/var/run/weir',
	weirCniSource: buildPath('cni', WEIR_CNI),
	pluginSourceDir: join(repoRoot, 'cni-plugins'),
};

export interface SetupReport {
	actions: string[];
	warnings: string[];
}

function installExecutable(src: string, binDir: string, name: string): void {
	const tmp = join(binDir, `.${name}.tmp-${process.pid}`);
	copyFileSync(src, tmp);
	chmodSync(tmp, 0o755);
	renameSync(tmp, join(binDir, name)); // never a torn binary for a runtime calling it now
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

export interface LinkDetacher {
	/** detaches the program behind a pinned link (a missing or dead link is fine) */
	detachPinnedLink(path: string): void;
}

/** The real detacher: the addon opens the pinned link and detaches it. */
export async function nativeDetacher(): Promise<LinkDetacher> {
	const { native } = await import('../bpf/native.js');
	return {
		detachPinnedLink(path) {
			const link = native().openPinnedLink(path);
			link.detach(); // detach also closes our fd
		},
	};
}

/** Restores the node: programs detached, pins, Weir's CNI conf and executables, socket dir removed. */
export function uninstallNode(p: NodePaths, detacher: LinkDetacher): SetupReport {
	const rep: SetupReport = { actions: [], warnings: [] };
	const links = join(p.pinRoot, 'links');
	if (existsSync(links)) {
		for (const f of readdirSync(links).sort()) {
			try {
				detacher.detachPinnedLink(join(links, f));
				rep.actions.push(`detached ${f}`);
			} catch (err) {
				const code = (err as { code?: string }).code;
				if (code !== 'ENOENT' && code !== 'ENODEV') rep.warnings.push(`detach ${f}: ${(err as Error).message}`);
			}
		}
	}
	if (existsSync(p.pinRoot)) {
		rmSync(p.pinRoot, { recursive: true, force: true });
		rep.actions.push(`removed pins under ${p.pinRoot}`);
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

function pathsFrom(o: Partial<NodePaths>): NodePaths {
	const p = { ...DEFAULT_NODE_PATHS };
	for (const [k, v] of Object.entries(o)) if (typeof v === 'string' && k in p) (p as unknown as Record<string, string>)[k] = v;
	return p;
}

function print(cmd: string, rep: SetupReport): void {
	for (const a of rep.actions) process.stdout.write(`${JSON.stringify({ level: 'info', component: 'node-setup', cmd, msg: a })}\n`);
	for (const w of rep.warnings) process.stdout.write(`${JSON.stringify({ level: 'warn', component: 'node-setup', cmd, msg: w })}\n`);
	process.stdout.write(`${JSON.stringify({ level: 'info', component: 'node-setup', cmd, msg: `${cmd} done`, actions: rep.actions.length })}\n`);
}

export function buildSetupCli(): Command {
	const program = new Command('weir-node-setup').description("prepares a node for Weir's agent, or restores it");
	const common = (c: Command): Command =>
		c
			.option('--cni-bin-dir <dir>', 'CNI executables', DEFAULT_NODE_PATHS.cniBinDir)
			.option('--cni-conf-dir <dir>', 'CNI configuration', DEFAULT_NODE_PATHS.cniConfDir)
			.option('--bpffs-root <dir>', 'bpffs mount point', DEFAULT_NODE_PATHS.bpffsRoot)
			.option('--pin-root <dir>', "the datapath's pins", DEFAULT_NODE_PATHS.pinRoot)
			.option('--run-dir <dir>', "the agent's socket directory", DEFAULT_NODE_PATHS.runDir);
	common(program.command('init').description('mount bpffs if missing, install weir-cni (and missing chained plugins)')).action(
		(o: Partial<NodePaths>) => print('init', initNode(pathsFrom(o))),
	);
	common(program.command('uninstall').description("detach Weir's programs, remove its pins, CNI config and executables")).action(
		async (o: Partial<NodePaths>) => print('uninstall', uninstallNode(pathsFrom(o), await nativeDetacher())),
	);
	return program;
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'));
if (isMain) {
	buildSetupCli()
		.parseAsync(process.argv)
		.catch((err: Error) => {
			process.stderr.write(`weir-node-setup: ${err.message}\n`);
			process.exit(1);
		});
}
