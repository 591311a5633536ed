// Container images built without a daemon: a root filesystem staged in a directory,
// one uncompressed layer made by GNU tar, and an OCI image layout written by hand,
// archived as a tar that `ctr images import` reads. Nothing is pulled.
import { createHash } from 'node:crypto';
import {
	chmodSync,
	copyFileSync,
	existsSync,
	mkdirSync,
	mkdtempSync,
	readdirSync,
	readFileSync,
	renameSync,
	rmSync,
	statSync,
	symlinkSync,
	writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { run } from './exec.js';
import { binPaths, cacheRoot, readVersions, sourceDir, type Versions } from './versions.js';

const GO = process.env['GO'] ?? '/usr/local/go/bin/go';

export interface ImageConfig {
	Entrypoint: string[];
	Cmd?: string[];
	Env?: string[];
	WorkingDir?: string;
	ExposedPorts?: Record<string, Record<string, never>>;
}

export interface LocalImages {
	pause: string;
	coredns: string;
	workload: string;
	/** ref -> OCI archive path */
	archives: Map<string, string>;
}

export const IMAGE_REFS = (v: Versions = readVersions()) => ({
	pause: 'weir.local/pause:3.10.1',
	coredns: `weir.local/coredns:${v.coredns}`,
	workload: 'weir.local/workload:1',
});

function sha256(data: Buffer | string): string {
	return createHash('sha256').update(data).digest('hex');
}

function fileSha(f: string): string {
	return sha256(readFileSync(f));
}

async function buildArchive(recipe: ImageSpec, out: string): Promise<void> {
	const work = mkdtempSync(join(tmpdir(), 'weir-image-'));
	try {
		const root = join(work, 'rootfs');
		mkdirSync(root);
		await recipe.stage(root);
		const layer = join(work, 'layer.tar');
		await run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', root, '-cf', layer, '.']);
		const layout = join(work, 'layout');
		const blobs = join(layout, 'blobs', 'sha256');
		mkdirSync(blobs, { recursive: true });
		const put = (data: Buffer): { digest: string; size: number } => {
			const hex = sha256(data);
			writeFileSync(join(blobs, hex), data);
			return { digest: `sha256:${hex}`, size: data.length };
		};
		const layerData = readFileSync(layer);
		const layerBlob = put(layerData);
		const config = Buffer.from(
			JSON.stringify({
				architecture: 'amd64',
				os: 'linux',
				config: { Env: ['PATH=/bin:/usr/bin:/sbin:/usr/sbin'], ...recipe.config },
				rootfs: { type: 'layers', diff_ids: [layerBlob.digest] },
				history: [{ created_by: 'weir hack/cluster/images.ts' }],
			}),
		);
		const configBlob = put(config);
		const manifest = Buffer.from(
			JSON.stringify({
				schemaVersion: 2,
				mediaType: 'application/vnd.oci.image.manifest.v1+json',
				config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configBlob },
				layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layerBlob }],
			}),
		);
		const manifestBlob = put(manifest);
		const tag = recipe.ref.slice(recipe.ref.lastIndexOf(':') + 1);
		writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
		writeFileSync(
			join(layout, 'index.json'),
			JSON.stringify({
				schemaVersion: 2,
				manifests: [
					{
						mediaType: 'application/vnd.oci.image.manifest.v1+json',
						...manifestBlob,
						platform: { architecture: 'amd64', os: 'linux' },
						annotations: {
							'io.containerd.image.name': recipe.ref,
							'org.opencontainers.image.ref.name': tag,
						},
					},
				],
			}),
		);
		const tmpOut = `${out}.tmp`;
		await run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-C', layout, '-cf', tmpOut, '.']);
		renameSync(tmpOut, out);
	} finally {
		rmSync(work, { recursive: true, force: true });
	}
}

/** /etc/passwd and /etc/group with root and nobody, and a sticky /tmp. */
export function stageBaseFiles(root: string): void {
	mkdirSync(join(root, 'etc'), { recursive: true });
	writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
	writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\nnobody:x:65534:\n');
	mkdirSync(join(root, 'tmp'), { mode: 0o1777 });
	chmodSync(join(root, 'tmp'), 0o1777);
}

/** Debian's static busybox as /bin/busybox, with a /bin symlink per applet (sh, nc, wget, ...). */
export async function stageBusybox(root: string): Promise<void> {
	const bin = join(root, 'bin');
	mkdirSync(bin, { recursive: true });
	copyFileSync('/bin/busybox', join(bin, 'busybox'));
	chmodSync(join(bin, 'busybox'), 0o755);
	const { stdout } = await run('/bin/busybox', ['--list']);
	for (const applet of stdout.split('\n').filter((a) => a && a !== 'busybox')) {
		symlinkSync('busybox', join(bin, applet));
	}
}

/** The pinned k8s.io/kubernetes module's source directory (downloaded into the Go module cache if needed). */
export async function kubernetesModuleDir(v: Versions = readVersions()): Promise<string> {
	const { stdout } = await run(GO, ['mod', 'download', '-json', `k8s.io/kubernetes@${v.kubernetes}`], {
		env: { ...process.env, GOTOOLCHAIN: 'local' },
	});
	return (JSON.parse(stdout) as { Dir: string }).Dir;
}

function pauseSource(v: Versions): string {
	return join(cacheRoot(), `kubernetes-${v.kubernetes}`, 'src', 'pause.c');
}

async function ensurePauseSource(v: Versions): Promise<string> {
	const dst = pauseSource(v);
	if (existsSync(dst)) return dst;
	// Upstream's pause.c from the pinned k8s.io/kubernetes module.
	const dir = await kubernetesModuleDir(v);
	mkdirSync(join(cacheRoot(), `kubernetes-${v.kubernetes}`, 'src'), { recursive: true });
	copyFileSync(join(dir, 'build', 'pause', 'linux', 'pause.c'), dst);
	return dst;
}

function recipes(v: Versions, pauseC: string): Record<keyof ReturnType<typeof IMAGE_REFS>, ImageSpec> {
	const refs = IMAGE_REFS(v);
	const bins = binPaths(v);
	const wl = join(sourceDir(), 'images', 'workload');
	const wlFiles = ['serve', 'redis', 'www/cgi-bin/index.cgi', 'www/cgi-bin/echo'];
	return {
		pause: {
			ref: refs.pause,
			inputs: `pause.c ${fileSha(pauseC)}`,
			config: { Entrypoint: ['/pause'] },
			async stage(root) {
				await run('gcc', ['-Os', '-static', '-DVERSION=v3.10.1-weir', '-o', join(root, 'pause'), pauseC]);
				await run('strip', [join(root, 'pause')]);
			},
		},
		coredns: {
			ref: refs.coredns,
			inputs: `coredns ${fileSha(bins.coredns)}`,
			config: { Entrypoint: ['/coredns'], ExposedPorts: { '53/udp': {}, '53/tcp': {} } },
			async stage(root) {
				stageBaseFiles(root);
				copyFileSync(bins.coredns, join(root, 'coredns'));
				chmodSync(join(root, 'coredns'), 0o755);
			},
		},
		workload: {
			ref: refs.workload,
			inputs: `busybox ${fileSha('/bin/busybox')} ${wlFiles.map((f) => fileSha(join(wl, f))).join(' ')}`,
			config: {
				Entrypoint: ['/weir/serve'],
				ExposedPorts: { '8080/tcp': {}, '9000/tcp': {}, '6379/tcp': {} },
			},
			async stage(root) {
				stageBaseFiles(root);
				await stageBusybox(root);
				mkdirSync(join(root, 'weir'));
				for (const f of ['serve', 'redis']) {
					copyFileSync(join(wl, f), join(root, 'weir', f));
					chmodSync(join(root, 'weir', f), 0o755);
				}
				mkdirSync(join(root, 'www', 'cgi-bin'), { recursive: true });
				for (const f of wlFiles.filter((w) => w.startsWith('www/'))) {
					copyFileSync(join(wl, f), join(root, f));
					chmodSync(join(root, f), 0o755);
				}
			},
		},
	};
}

export interface ImageSpec {
	/** Full reference, e.g. weir.local/agent:dev */
	ref: string;
	/** Fills the image's root filesystem (an empty directory). */
	stage(root: string): Promise<void>;
	config: ImageConfig;
	/** Cache key material (e.g. a hash of the staged files): unchanged means reused. */
	inputs: string;
}

/**
 * Builds one single-layer image without a daemon and returns its OCI archive
 * (for Cluster.importImage). Cached under $WEIR_CACHE/images/ when `inputs` is given.
 */
export async function buildImage(spec: ImageSpec): Promise<string> {
	const dir = join(cacheRoot(), 'images');
	mkdirSync(dir, { recursive: true });
	const slug = spec.ref.replace(/[^A-Za-z0-9.-]+/g, '_');
	const key = sha256(`${spec.ref}\n${spec.inputs}\n${JSON.stringify(spec.config)}`).slice(0, 16);
	const out = join(dir, `custom-${slug}-${key}.oci.tar`);
	if (!existsSync(out)) {
		await buildArchive(spec, out);
		for (const f of readdirSync(dir)) {
			if (f.startsWith(`custom-${slug}-`) && f !== `custom-${slug}-${key}.oci.tar`) rmSync(join(dir, f), { force: true });
		}
	}
	return out;
}

/**
 * Builds (or finds cached) OCI archives for the pause, CoreDNS and workload images,
 * keyed by a hash of their inputs under $WEIR_CACHE/images/.
 */
export async function buildImages(log: (msg: string) => void = () => {}): Promise<LocalImages> {
	const v = readVersions();
	const pauseC = await ensurePauseSource(v);
	const dir = join(cacheRoot(), 'images');
	mkdirSync(dir, { recursive: true });
	const refs = IMAGE_REFS(v);
	const archives = new Map<string, string>();
	for (const [key, recipe] of Object.entries(recipes(v, pauseC))) {
		const hash = sha256(`${recipe.ref}\n${recipe.inputs}\n${JSON.stringify(recipe.config)}`).slice(0, 16);
		const out = join(dir, `${key}-${hash}.oci.tar`);
		if (!existsSync(out)) {
			log(`building image ${recipe.ref}`);
			await buildArchive(recipe, out);
			// Older archives of the same image are superseded.
			for (const f of readdirSync(dir)) {
				if (f.startsWith(`${key}-`) && f !== `${key}-${hash}.oci.tar`) rmSync(join(dir, f), { force: true });
			}
		}
		archives.set(recipe.ref, out);
	}
	return { ...refs, archives };
}

export function archiveSize(f: string): number {
	return statSync(f).size;
}
