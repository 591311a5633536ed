// The images the upstream e2e suite runs, built here and imported into every node under
// exactly the names the suite asks for (test/utils/image/manifest.go of the pinned
// k8s.io/kubernetes), so that pods with `imagePullPolicy: IfNotPresent` never pull.
//   agnhost  /agnhost from test/images/agnhost of the same module (static Go binary),
//            plus what upstream's image carries that the netpol specs can touch: a shell
//            (busybox), /agnhost-2, /uploads, porter's localhost.crt/key.
//   pause    the local cluster's pause image (weir.local/pause, built from upstream's
//            pause.c) tagged with the suite's name; kubelet's sandboxes already use it.
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, symlinkSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster } from '../cluster/cluster.js';
import { buildImage, kubernetesModuleDir, stageBaseFiles, stageBusybox } from '../cluster/images.js';
import { cacheRoot, readVersions, type Versions } from '../cluster/versions.js';

/** What build-binaries.sh e2e leaves in $WEIR_CACHE/e2e-<v>/bin. */
export interface E2eBins {
	dir: string;
	e2eTest: string;
	ginkgo: string;
	agnhost: string;
	/** the marker build-binaries.sh writes last */
	complete: string;
}

export function e2eBins(v: Versions = readVersions()): E2eBins {
	const dir = join(cacheRoot(), `e2e-${v.kubernetes}`, 'bin');
	return {
		dir,
		e2eTest: join(dir, 'e2e.test'),
		ginkgo: join(dir, 'ginkgo'),
		agnhost: join(dir, 'agnhost'),
		complete: join(dir, '.complete'),
	};
}

/**
 * Image references of the suite by ImageID ("Agnhost", "Pause", ...), read from
 * manifest.go's initRegistry and initImageConfigs:
 *   PromoterE2eRegistry: "registry.k8s.io/e2e-test-images",
 *   configs[Agnhost] = Config{list.PromoterE2eRegistry, "agnhost", "2.59"}
 */
export function parseImageManifest(source: string): Map<string, string> {
	const registries = new Map<string, string>();
	const init = /initRegistry\s*=\s*RegistryList\{([\s\S]*?)\n\t\}/.exec(source)?.[1] ?? '';
	for (const m of init.matchAll(/^\s*(\w+):\s*"([^"]+)",/gm)) registries.set(m[1]!, m[2]!);
	const refs = new Map<string, string>();
	for (const m of source.matchAll(/configs\[(\w+)\]\s*=\s*Config\{list\.(\w+),\s*"([^"]+)",\s*"([^"]+)"\}/g)) {
		const registry = registries.get(m[2]!);
		if (registry) refs.set(m[1]!, `${registry}/${m[3]}:${m[4]}`);
	}
	return refs;
}

export interface E2eImageRefs {
	agnhost: string;
	pause: string;
}

export async function e2eImageRefs(v: Versions = readVersions()): Promise<E2eImageRefs> {
	const manifest = join(await kubernetesModuleDir(v), 'test', 'utils', 'image', 'manifest.go');
	const refs = parseImageManifest(readFileSync(manifest, 'utf8'));
	const agnhost = refs.get('Agnhost');
	const pause = refs.get('Pause');
	if (!agnhost || !pause) throw new Error(`${manifest}: no Agnhost or Pause image config found (format changed?)`);
	return { agnhost, pause };
}

function sha(f: string): string {
	return createHash('sha256').update(readFileSync(f)).digest('hex');
}

/** Builds (or reuses) the agnhost image archive under `ref`. */
export async function buildAgnhostImage(ref: string, bins: E2eBins = e2eBins()): Promise<string> {
	const porter = join(await kubernetesModuleDir(), 'test', 'images', 'agnhost', 'porter');
	const certs = ['localhost.crt', 'localhost.key'].map((f) => join(porter, f));
	return buildImage({
		ref,
		inputs: [bins.agnhost, '/bin/busybox', ...certs].map((f) => `${f} ${sha(f)}`).join('\n'),
		// Upstream's ENTRYPOINT, CMD and EXPOSE (test/images/agnhost/Dockerfile).
		config: {
			Entrypoint: ['/agnhost'],
			Cmd: ['pause'],
			ExposedPorts: { '80/tcp': {}, '8080/tcp': {}, '8081/tcp': {}, '9376/tcp': {}, '5000/tcp': {} },
		},
		async stage(root) {
			stageBaseFiles(root);
			// The user and group upstream's image defines for its SupplementalGroups spec.
			appendFileSync(join(root, 'etc', 'passwd'), 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n');
			appendFileSync(join(root, 'etc', 'group'), 'user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n');
			await stageBusybox(root);
			copyFileSync(bins.agnhost, join(root, 'agnhost'));
			chmodSync(join(root, 'agnhost'), 0o755);
			symlinkSync('agnhost', join(root, 'agnhost-2'));
			mkdirSync(join(root, 'uploads'));
			for (const c of certs) copyFileSync(c, join(root, c.slice(porter.length + 1)));
		},
	});
}

/** Imports the agnhost image into every node and tags the cluster's pause image with the suite's name. */
export async function loadE2eImages(c: Cluster, log: (m: string) => void): Promise<E2eImageRefs> {
	const refs = await e2eImageRefs();
	const archive = await buildAgnhostImage(refs.agnhost);
	log(`importing ${refs.agnhost} into ${c.nodes.map((n) => n.name).join(', ')}; tagging ${c.images.pause} as ${refs.pause}`);
	await c.importImage(archive);
	for (const n of c.nodes) {
		const ctr = ['ctr', '--address', '/run/containerd/containerd.sock', '-n', 'k8s.io', 'images'];
		await c.nodeExec(n.name, [...ctr, 'tag', '--force', c.images.pause, refs.pause]);
	}
	return refs;
}
