// Test topology: one "node" network namespace and pod namespaces joined to it by
// veth pairs, wired like Weir wires pods (a /32 per pod, a link-local gateway, a /32
// host route per pod). Nothing is routed to the machine's uplink: the node namespace
// has no interface but the pod veths. Everything made here is removed by destroy(),
// also after a failed test.
import { spawn, ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { repoRoot } from '../../src/shared/package.js';
import { runSync } from '../../src/shared/process.js';

export function sh(cmd: string, args: string[], opts: { allowFail?: boolean; input?: string } = {}): string {
	return runSync(cmd, args, opts);
}

export function nsExec(ns: string, args: string[], opts: { allowFail?: boolean } = {}): string {
	return sh('ip', ['netns', 'exec', ns, ...args], opts);
}

export const GATEWAY = '169.254.1.1';
export const NODE_IP = '198.18.255.1';

export interface Pod {
	name: string;
	netns: string;
	ip: string;
	/** host-side veth name, in the node namespace */
	hostIf: string;
	hostIfindex: number;
}

export interface Prober {
	probe(proto: 'tcp' | 'udp', ip: string, port: number, timeoutMs?: number): Promise<boolean>;
	close(): void;
}

let counter = 0;

export class Topology {
	readonly pods: Pod[] = [];
	private readonly children = new Set<ChildProcess>();

	private constructor(
		readonly id: string,
		readonly nodeNs: string,
	) {}

	/** Node namespace plus `count` pods with addresses 10.<subnet>.0.(10+i). */
	static create(count: number, subnet = 200): Topology {
		const id = `${process.pid % 10000}${counter++}`;
		const t = new Topology(id, `weirt-${id}-node`);
		try {
			sh('ip', ['netns', 'add', t.nodeNs]);
			nsExec(t.nodeNs, ['ip', 'link', 'set', 'lo', 'up']);
			nsExec(t.nodeNs, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
			// The node's own address (RFC 2544 benchmark range, never routed here), on lo: the "host" identity.
			nsExec(t.nodeNs, ['ip', 'addr', 'add', `${NODE_IP}/32`, 'dev', 'lo']);
			nsExec(t.nodeNs, ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0']);
			for (let i = 0; i < count; i++) t.addPod(`pod${i}`, `10.${subnet}.0.${10 + i}`);
		} catch (err) {
			t.destroy();
			throw err;
		}
		return t;
	}

	addPod(name: string, ip: string): Pod {
		const idx = this.pods.length;
		const netns = `weirt-${this.id}-${name}`;
		const hostIf = `wt${this.id}h${idx}`.slice(0, 15);
		const tmpIf = `wt${this.id}c${idx}`.slice(0, 15);
		sh('ip', ['netns', 'add', netns]);
		// Make the pair inside the node namespace, then move the pod end.
		nsExec(this.nodeNs, ['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', tmpIf]);
		const pod: Pod = { name, netns, ip, hostIf, hostIfindex: 0 };
		this.pods.push(pod);
		nsExec(this.nodeNs, ['ip', 'link', 'set', tmpIf, 'netns', netns]);
		nsExec(netns, ['ip', 'link', 'set', tmpIf, 'name', 'eth0']);
		nsExec(netns, ['ip', 'link', 'set', 'lo', 'up']);
		nsExec(netns, ['ip', 'addr', 'add', `${ip}/32`, 'dev', 'eth0']);
		nsExec(netns, ['ip', 'link', 'set', 'eth0', 'up']);
		nsExec(netns, ['ip', 'route', 'add', GATEWAY, 'dev', 'eth0', 'scope', 'link']);
		// The gateway is the host end of the pair, by its MAC: no ARP for it (Cilium's way).
		const mac = nsExec(this.nodeNs, ['cat', `/sys/class/net/${hostIf}/address`]).trim();
		nsExec(netns, ['ip', 'neigh', 'add', GATEWAY, 'lladdr', mac, 'dev', 'eth0', 'nud', 'permanent']);
		nsExec(netns, ['ip', 'route', 'add', 'default', 'via', GATEWAY, 'dev', 'eth0']);
		nsExec(netns, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
		nsExec(this.nodeNs, ['sysctl', '-qw', `net.ipv4.conf.${hostIf}.proxy_arp=1`]);
		nsExec(this.nodeNs, ['sysctl', '-qw', `net.ipv6.conf.${hostIf}.disable_ipv6=1`]);
		nsExec(this.nodeNs, ['ip', 'link', 'set', hostIf, 'up']);
		nsExec(this.nodeNs, ['ip', 'route', 'add', `${ip}/32`, 'dev', hostIf]);
		pod.hostIfindex = Number(nsExec(this.nodeNs, ['cat', `/sys/class/net/${hostIf}/ifindex`]).trim());
		return pod;
	}

	pod(name: string): Pod {
		const p = this.pods.find((x) => x.name === name);
		if (!p) throw new Error(`no pod ${name}`);
		return p;
	}

	/** Starts the probe server in a pod (tcp and udp echo on each port); resolves once listening. */
	async serve(pod: Pod, port: number | number[]): Promise<ChildProcess> {
		const ports = Array.isArray(port) ? port.join(',') : String(port);
		const child = spawn('ip', ['netns', 'exec', pod.netns, process.execPath, probeScript, 'serve', ports], {
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		this.children.add(child);
		child.on('exit', () => this.children.delete(child));
		await new Promise<void>((res, rej) => {
			const timer = setTimeout(() => rej(new Error(`server in ${pod.name} did not start`)), 10_000);
			child.stdout!.once('data', () => {
				clearTimeout(timer);
				res();
			});
			child.once('exit', (code) => {
				clearTimeout(timer);
				rej(new Error(`server in ${pod.name} exited with ${code}`));
			});
		});
		return child;
	}

	/** One connection attempt from a pod: true if it got an echo back. */
	probe(from: Pod, proto: 'tcp' | 'udp', ip: string, port: number, timeoutMs = 700): boolean {
		const out = nsExec(from.netns, [process.execPath, probeScript, 'connect', proto, ip, String(port), String(timeoutMs)], {
			allowFail: true,
		});
		return out.trim() === 'ok';
	}

	/** A long-lived prober in a pod: many concurrent attempts without a process each. */
	prober(from: Pod): Prober {
		const child = spawn('ip', ['netns', 'exec', from.netns, process.execPath, probeScript, 'prober'], {
			stdio: ['pipe', 'pipe', 'inherit'],
		});
		this.children.add(child);
		child.on('exit', () => this.children.delete(child));
		const waiting = new Map<number, (ok: boolean) => void>();
		let buf = '';
		child.stdout!.on('data', (d: Buffer) => {
			buf += d.toString();
			let nl: number;
			while ((nl = buf.indexOf('\n')) >= 0) {
				const { id, ok } = JSON.parse(buf.slice(0, nl)) as { id: number; ok: boolean };
				buf = buf.slice(nl + 1);
				waiting.get(id)?.(ok);
				waiting.delete(id);
			}
		});
		let next = 0;
		return {
			probe: (proto, ip, port, timeout = 400) =>
				new Promise<boolean>((res) => {
					const id = next++;
					waiting.set(id, res);
					child.stdin!.write(`${JSON.stringify({ id, proto, ip, port, timeout })}\n`);
				}),
			close: () => {
				child.stdin!.end();
				child.kill('SIGKILL');
			},
		};
	}

	ping(from: Pod, ip: string): boolean {
		const out = nsExec(from.netns, ['ping', '-c', '1', '-W', '1', ip], { allowFail: true });
		return / 0% packet loss/.test(out);
	}

	/** Removes every process, namespace and link this topology made. Idempotent. */
	destroy(): void {
		for (const c of this.children) c.kill('SIGKILL');
		this.children.clear();
		for (const p of this.pods) sh('ip', ['netns', 'del', p.netns], { allowFail: true });
		// Deleting the node namespace removes the host ends of the pairs with it.
		sh('ip', ['netns', 'del', this.nodeNs], { allowFail: true });
		this.pods.length = 0;
	}
}

export const probeScript = resolve(repoRoot, 'dist/hack/lab/probe.js');
