// A private containerd for runtime tests: its own root, state, sockets and CRI config
// (CNI conf/bin dirs of a CniLab), started inside the lab's node network namespace
// with nsenter (network only: the pod netns bind mounts containerd makes stay visible
// to the agent), the pause image imported from the local cache. Never touches a
// system containerd; stop() kills only the process it started and removes its dirs.
// Also a minimal CRI client (gRPC, the Kubernetes CRI v1 proto in test/fixtures/cri),
// the part of crictl the tests need (runp / inspectp / stopp / rmp).
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { repoRoot } from '../../src/shared/package.js';
import { run } from './cni-lab.js';
import { containerdConfig } from '../../hack/cluster/configs.js';

export const PAUSE_IMAGE = 'weir.local/pause:3.10.1';

export function pauseArchive(): string | undefined {
	const dir = '/var/cache/weir/images';
	if (!existsSync(dir)) return undefined;
	const f = readdirSync(dir).find((n) => n.startsWith('pause-') && n.endsWith('.oci.tar'));
	return f ? join(dir, f) : undefined;
}

type Call = (req: object, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;

export class Containerd {
	private child: ChildProcess | undefined;
	private logText = '';
	/** /run/containerd did not exist before: the empty dirs our shims made there are removed at stop */
	private ownsRunDir = false;
	private client: Record<string, Call> & grpc.Client;

	private constructor(
		readonly root: string,
		readonly state: string,
		readonly socket: string,
	) {
		const def = protoLoader.loadSync(resolve(repoRoot, 'test/fixtures/cri/api.proto'), { keepCase: false, longs: Number, enums: String, defaults: true });
		const pkg = grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } } };
		this.client = new pkg.runtime.v1.RuntimeService(`unix://${socket}`, grpc.credentials.createInsecure()) as unknown as Record<string, Call> & grpc.Client;
	}

	static async start(opts: { id: string; nodeNs: string; cniConfDir: string; cniBinDir: string }): Promise<Containerd> {
		const root = `/tmp/weir-test-ctrd-${opts.id}`;
		const state = `/run/weir-test-ctrd-${opts.id}`;
		const socket = join(state, 'containerd.sock');
		mkdirSync(root, { recursive: true });
		mkdirSync(state, { recursive: true });
		const config = containerdConfig(PAUSE_IMAGE, {
			root: `${root}/root`,
			state: `${state}/state`,
			socket,
			cniBinDir: opts.cniBinDir,
			cniConfDir: opts.cniConfDir,
			streamPort: '0',
		});
		writeFileSync(join(root, 'config.toml'), config);
		const c = new Containerd(root, state, socket);
		c.ownsRunDir = !existsSync('/run/containerd');
		const child = spawn('nsenter', [`--net=/run/netns/${opts.nodeNs}`, '--', 'containerd', '--config', join(root, 'config.toml')], {
			stdio: ['ignore', 'ignore', 'pipe'],
		});
		c.child = child;
		child.stderr!.on('data', (d: Buffer) => (c.logText = (c.logText + d.toString()).slice(-30000)));
		try {
			const deadline = Date.now() + 20_000;
			while (!existsSync(socket)) {
				if (child.exitCode !== null) throw new Error(`containerd exited: ${c.logText.slice(-2000)}`);
				if (Date.now() > deadline) throw new Error(`containerd did not start: ${c.logText.slice(-2000)}`);
				await new Promise((r) => setTimeout(r, 100));
			}
			const archive = pauseArchive();
			if (!archive) throw new Error('no pause image under /var/cache/weir/images (the cluster build makes it)');
			const imp = await run('ctr', ['-a', socket, '-n', 'k8s.io', 'images', 'import', '--no-unpack', archive]);
			if (imp.code !== 0) throw new Error(`ctr import: ${imp.stderr}`);
			await c.call('version', {});
		} catch (err) {
			await c.stop();
			throw err;
		}
		return c;
	}

	get log(): string {
		return this.logText;
	}

	call(method: string, req: object, timeoutMs = 60_000): Promise<Record<string, unknown>> {
		return new Promise((res, rej) => {
			const fn = this.client[method];
			if (!fn) return rej(new Error(`no CRI method ${method}`));
			fn.call(this.client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, out) => (err ? rej(err) : res(out)));
		});
	}

	/** crictl runp: a pod sandbox; returns its id. */
	async runp(name: string, namespace: string, uid: string): Promise<string> {
		const r = await this.call('runPodSandbox', {
			config: {
				metadata: { name, namespace, uid, attempt: 0 },
				hostname: name,
				logDirectory: join(this.root, 'logs', uid),
				linux: {},
			},
		});
		return r['podSandboxId'] as string;
	}

	/** crictl inspectp: the sandbox's IP and state. */
	async inspectp(id: string): Promise<{ ip: string; state: string }> {
		const r = await this.call('podSandboxStatus', { podSandboxId: id });
		const status = r['status'] as { network?: { ip?: string }; state?: string };
		return { ip: status.network?.ip ?? '', state: status.state ?? '' };
	}

	async stopp(id: string): Promise<void> {
		await this.call('stopPodSandbox', { podSandboxId: id });
	}

	async rmp(id: string): Promise<void> {
		await this.call('removePodSandbox', { podSandboxId: id });
	}

	async pods(): Promise<string[]> {
		const r = await this.call('listPodSandbox', {});
		return ((r['items'] ?? []) as Array<{ id: string }>).map((p) => p.id);
	}

	/** Stops our containerd (SIGTERM, then SIGKILL) and removes its dirs. */
	async stop(): Promise<void> {
		// Sandboxes first (their shims and pause processes are ours too).
		try {
			for (const id of await this.pods()) {
				await this.stopp(id).catch(() => undefined);
				await this.rmp(id).catch(() => undefined);
			}
		} catch {
			// containerd already gone
		}
		this.client.close();
		const child = this.child;
		this.child = undefined;
		if (child && child.exitCode === null && child.signalCode === null) {
			await new Promise<void>((res) => {
				const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
				child.once('exit', () => {
					clearTimeout(t);
					res();
				});
				child.kill('SIGTERM');
			});
		}
		// Unmount what containerd left mounted under its dirs (rootfs, shm), deepest first.
		const mounts = (await run('findmnt', ['-rn', '-o', 'TARGET'])).stdout
			.split('\n')
			.filter((m) => m.startsWith(this.root) || m.startsWith(this.state))
			.sort((a, b) => b.length - a.length);
		for (const m of mounts) await run('umount', ['-l', m]);
		rmSync(this.root, { recursive: true, force: true });
		rmSync(this.state, { recursive: true, force: true });
		// The shim's socket dir is fixed by containerd 1.6 (/run/containerd/s); remove what
		// is left empty, only when we made it.
		if (this.ownsRunDir) {
			for (const d of ['/run/containerd/runc/k8s.io', '/run/containerd/runc', '/run/containerd/s', '/run/containerd']) {
				try {
					rmdirSync(d);
				} catch {
					// not empty (someone else's) or gone
				}
			}
		}
	}
}
