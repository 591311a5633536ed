// The capture lab's ztunnel (test/helpers/ztunnel-lab.ts ztunnel) as a test drives it:
// a Node process in a lab node namespace, its events, and commands on its stdin.
import { ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { repoRoot } from '../../src/shared/package.js';

const lab = resolve(repoRoot, 'dist/test/helpers/ztunnel-lab.js');

export interface ZtEvent {
	event: string;
	src?: { address: string; port: number };
	dst?: { address: string; port: number };
	local?: { address: string; port: number };
	id?: number;
	line?: string;
	error?: string;
	code?: string;
	op?: string;
}

/** The ztunnel process: its events, and commands on stdin. */
export class Ztunnel {
	readonly events: ZtEvent[] = [];
	private buf = '';
	private constructor(readonly child: ChildProcess) {
		child.stdout!.on('data', (d: Buffer) => {
			this.buf += d.toString();
			let nl: number;
			while ((nl = this.buf.indexOf('\n')) >= 0) {
				this.events.push(JSON.parse(this.buf.slice(0, nl)) as ZtEvent);
				this.buf = this.buf.slice(nl + 1);
			}
		});
	}

	static async start(nodeNs: string, children: Set<ChildProcess>): Promise<Ztunnel> {
		const child = spawn('ip', ['netns', 'exec', nodeNs, process.execPath, lab, 'ztunnel', JSON.stringify({ proxyPorts: [8080] })], {
			stdio: ['pipe', 'pipe', 'inherit'],
		});
		children.add(child);
		child.on('exit', () => children.delete(child));
		const z = new Ztunnel(child);
		await z.wait((e) => e.event === 'ready', 10_000);
		return z;
	}

	async wait(pred: (e: ZtEvent) => boolean, timeoutMs = 3000): Promise<ZtEvent> {
		const deadline = Date.now() + timeoutMs;
		for (;;) {
			const e = this.events.find(pred);
			if (e) return e;
			if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`the ztunnel exited; events: ${JSON.stringify(this.events)}`);
			if (Date.now() > deadline) throw new Error(`no ztunnel event within ${timeoutMs} ms; events: ${JSON.stringify(this.events.slice(-5))}`);
			await new Promise((r) => setTimeout(r, 10));
		}
	}

	private nextId = 0;
	/** The ztunnel connects to address:port from `source`; resolves with the first line the peer sent. */
	async deliver(source: string, address: string, port: number): Promise<ZtEvent> {
		const id = this.nextId++;
		this.child.stdin!.write(`${JSON.stringify({ cmd: 'deliver', id, source, address, port })}\n`);
		return this.wait((e) => (e.event === 'delivered' || e.event === 'failed') && e.id === id, 5000);
	}

	async kill(): Promise<void> {
		if (this.child.exitCode !== null || this.child.signalCode !== null) return;
		const gone = new Promise((r) => this.child.once('exit', r));
		this.child.kill('SIGKILL');
		await gone;
	}
}
