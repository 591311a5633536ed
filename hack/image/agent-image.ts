// The Weir agent image, built without a Docker daemon (hack/cluster/images.ts'
// buildImage: a staged root filesystem, one layer, an OCI layout archive that
// `ctr images import` and `kind load image-archive` read).
//
// Contents: the Node runtime of this machine (/usr/bin/node from the `nodejs` package)
// with exactly the shared libraries it and the addon load (found with ldd), the
// compiled TypeScript (dist/src), the production node_modules (type declarations, maps
// and docs left out), the addon, the eBPF objects, the weir-cni executable, the CNI
// plugins Weir chains with (Debian's containernetworking-plugins: host-local, loopback,
// portmap), busybox (a shell, `mount` for bpffs), the built web UI (ui/dist, served
// by weir-controller, which runs from the same image) and Istio's vendored CRDs
// (deploy/crds/, which weir-controller creates where absent). No compiler, headers or npm.
// deploy/image/Dockerfile builds the same layout for people with Docker.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildImage } from '../cluster/images.js';
import { executables, packageVersion, repoRoot } from '../../src/shared/package.js';
import { DEFAULTS } from '../../src/shared/defaults.js';
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../../src/agent/runtime.js';
import { ISTIO_CRDS_FILE } from '../../src/controller/crds.js';

export const AGENT_IMAGE_REPO = 'weir.local/weir-agent';

/** The image reference deploy/ uses: weir.local/weir-agent:<package version>. */
export function defaultAgentRef(): string {
	return `${AGENT_IMAGE_REPO}:${packageVersion()}`;
}

const NODE = '/usr/bin/node';
const CNI_PLUGINS = ['host-local', 'loopback', 'portmap'];
const CNI_PLUGIN_DIR = '/usr/lib/cni';

export interface AgentImageInputs {
	node: string;
	addon: string;
	bpfObjects: string[];
	weirCni: string | undefined;
	distDir: string;
	/** the built web UI (ui/dist), served by weir-controller */
	uiDir: string | undefined;
	/** Istio's vendored CRDs (deploy/crds/istio-security.yaml), which weir-controller creates where absent */
	istioCrds: string;
	/** production package directories (absolute) */
	packages: string[];
}

/** Files with the extensions below are not needed at run time. */
function keepModuleFile(name: string): boolean {
	return !/\.(d\.ts|d\.mts|d\.cts|map|md|markdown|ts|mts|cts)$/i.test(name) && !/^(README|CHANGELOG|HISTORY)(\..*)?$/i.test(name);
}

/** Shared libraries a binary loads (ldd), by path, plus the dynamic loader. */
export function sharedLibs(binary: string): string[] {
	const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
	const libs: string[] = [];
	for (const line of out.split('\n')) {
		const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
		if (m?.[1]) libs.push(m[1]);
	}
	return libs;
}

/** Production dependencies as npm resolved them (npm ls --omit=dev), top-level dirs only. */
export function productionPackages(): string[] {
	const out = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
	const nm = join(repoRoot, 'node_modules') + '/';
	return [...new Set(out.split('\n').filter((l) => l.startsWith(nm) && !l.slice(nm.length).includes('/node_modules/')))].sort();
}

export function gatherInputs(): AgentImageInputs {
	const bpfDir = join(repoRoot, 'build', 'bpf');
	const addon = join(repoRoot, 'build', 'addon', 'Release', 'weir_native.node');
	const dist = join(repoRoot, 'dist', 'src');
	const missing = [addon, bpfDir, join(dist, 'agent', 'main.js')].filter((f) => !existsSync(f));
	if (missing.length) throw new Error(`not built: ${missing.join(', ')} (run scripts/setup.sh)`);
	const weirCni = join(repoRoot, 'build', 'cni', 'weir-cni');
	const uiDir = join(repoRoot, 'ui', 'dist');
	return {
		uiDir: existsSync(join(uiDir, 'index.html')) ? uiDir : undefined,
		istioCrds: ISTIO_CRDS_FILE,
		node: realpathSync(NODE),
		addon,
		bpfObjects: readdirSync(bpfDir)
			.filter((f) => f.endsWith('.o'))
			.map((f) => join(bpfDir, f)),
		weirCni: existsSync(weirCni) ? weirCni : undefined,
		distDir: dist,
		packages: productionPackages(),
	};
}

function walk(dir: string, out: string[] = []): string[] {
	for (const e of readdirSync(dir, { withFileTypes: true })) {
		const p = join(dir, e.name);
		if (e.isDirectory()) walk(p, out);
		else out.push(p);
	}
	return out;
}

/** Cache key material: a hash over every staged file's bytes (unchanged inputs reuse the archive). */
export function inputsDigest(i: AgentImageInputs): string {
	const h = createHash('sha256');
	const add = (f: string): void => {
		h.update(`${f}\0${statSync(f).size}\0`);
		h.update(readFileSync(f));
	};
	// This builder itself: how it stages the root (wrappers, layout) is an input too.
	add(fileURLToPath(import.meta.url));
	for (const f of [i.node, ...sharedLibs(i.node), ...sharedLibs(i.addon), i.addon, ...i.bpfObjects, join(repoRoot, 'package.json'), '/bin/busybox']) add(f);
	if (i.weirCni) add(i.weirCni);
	if (i.uiDir) for (const f of walk(i.uiDir).sort()) add(f);
	add(i.istioCrds);
	for (const p of CNI_PLUGINS) add(join(CNI_PLUGIN_DIR, p));
	for (const f of walk(i.distDir)
		.filter((f) => f.endsWith('.js'))
		.sort())
		add(f);
	for (const p of i.packages) h.update(`${p}@${(JSON.parse(readFileSync(join(p, 'package.json'), 'utf8')) as { version?: string }).version}\n`);
	return h.digest('hex').slice(0, 16);
}

function copyExec(src: string, dst: string): void {
	mkdirSync(dirname(dst), { recursive: true });
	copyFileSync(src, dst);
	chmodSync(dst, 0o755);
}

function wrapper(root: string, name: string, script: string, nodeFlags: readonly string[] = [], env: Readonly<Record<string, string>> = {}): void {
	const f = join(root, 'usr', 'local', 'bin', name);
	mkdirSync(dirname(f), { recursive: true });
	const exports = Object.entries(env)
		.map(([k, v]) => `export ${k}='${v}'\n`)
		.join('');
	writeFileSync(f, `#!/bin/sh\n${exports}exec /usr/bin/node ${[...nodeFlags, '--enable-source-maps'].join(' ')} /opt/weir/dist/src/${script} "$@"\n`);
	chmodSync(f, 0o755);
}

/** Fills `root` with the agent image's file system. */
export async function stageAgentRoot(root: string, i: AgentImageInputs): Promise<void> {
	// Runtime: node and the libraries it and the addon load, at the paths ldd found them.
	copyExec(i.node, join(root, 'usr', 'bin', 'node'));
	for (const lib of new Set([...sharedLibs(i.node), ...sharedLibs(i.addon)])) {
		const dst = join(root, lib);
		mkdirSync(dirname(dst), { recursive: true });
		copyFileSync(realpathSync(lib), dst);
	}
	// busybox: sh for the wrappers, mount for bpffs, and tools to look around a node.
	copyExec('/bin/busybox', join(root, 'bin', 'busybox'));
	const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' })
		.split('\n')
		.filter((a) => a && a !== 'busybox');
	for (const a of applets) symlinkSync('busybox', join(root, 'bin', a));
	mkdirSync(join(root, 'etc'), { recursive: true });
	writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
	writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\nnobody:x:65534:\n');
	mkdirSync(join(root, 'tmp'), { mode: 0o1777 });
	chmodSync(join(root, 'tmp'), 0o1777);
	mkdirSync(join(root, 'root'), { recursive: true });

	// Weir itself under /opt/weir, the layout src/shared/package.ts expects (dist/, build/).
	const app = join(root, 'opt', 'weir');
	mkdirSync(app, { recursive: true });
	const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as Record<string, unknown>;
	delete pkg['devDependencies'];
	delete pkg['scripts'];
	writeFileSync(join(app, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
	cpSync(i.distDir, join(app, 'dist', 'src'), { recursive: true, filter: (s) => statSync(s).isDirectory() || /\.js(\.map)?$/.test(s) });
	copyExec(i.addon, join(app, 'build', 'addon', 'Release', 'weir_native.node'));
	for (const o of i.bpfObjects) {
		mkdirSync(join(app, 'build', 'bpf'), { recursive: true });
		copyFileSync(o, join(app, 'build', 'bpf', basename(o)));
	}
	if (i.weirCni) copyExec(i.weirCni, join(app, 'build', 'cni', 'weir-cni'));
	if (i.uiDir) cpSync(i.uiDir, join(app, 'ui', 'dist'), { recursive: true });
	mkdirSync(join(app, 'deploy', 'crds'), { recursive: true });
	copyFileSync(i.istioCrds, join(app, relative(repoRoot, ISTIO_CRDS_FILE)));
	for (const p of CNI_PLUGINS) copyExec(join(CNI_PLUGIN_DIR, p), join(app, 'cni-plugins', p));
	const nm = join(repoRoot, 'node_modules');
	for (const p of i.packages) {
		cpSync(p, join(app, 'node_modules', relative(nm, p)), {
			recursive: true,
			dereference: true,
			filter: (s) => (statSync(s).isDirectory() ? basename(s) !== '.bin' : keepModuleFile(basename(s))),
		});
	}
	// One wrapper per executable of package.json's "bin" (the one list of entry points).
	for (const [name, script] of Object.entries(executables())) {
		const rel = script.replace(/^dist\/src\//, '');
		if (name === 'weir-agent') wrapper(root, name, rel, AGENT_NODE_FLAGS, AGENT_ENV);
		else wrapper(root, name, rel);
	}
}

export interface BuiltImage {
	ref: string;
	archive: string;
	bytes: number;
	/** the archive gzipped, as a registry would store it (measured, not stored) */
	gzipBytes?: number;
}

/** Builds (or reuses) the agent image archive. */
export async function buildAgentImage(opts: { ref?: string; log?: (m: string) => void } = {}): Promise<BuiltImage> {
	const ref = opts.ref ?? defaultAgentRef();
	const log = opts.log ?? ((m: string) => process.stderr.write(`[image] ${m}\n`));
	const inputs = gatherInputs();
	if (!inputs.weirCni) log('warning: build/cni/weir-cni is not built; the image will have no CNI executable');
	if (!inputs.uiDir) log('warning: ui/dist is not built; weir-controller will serve the API without the web UI');
	const digest = inputsDigest(inputs);
	const t0 = Date.now();
	const archive = await buildImage({
		ref,
		inputs: digest,
		config: {
			Entrypoint: ['/usr/local/bin/weir-agent'],
			Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_ENV=production'],
			WorkingDir: '/opt/weir',
			ExposedPorts: { [`${DEFAULTS.observerPort}/tcp`]: {} },
		},
		stage: (root) => stageAgentRoot(root, inputs),
	});
	const bytes = statSync(archive).size;
	log(`${ref}: ${archive} (${(bytes / 1e6).toFixed(1)} MB, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
	return { ref, archive, bytes };
}
