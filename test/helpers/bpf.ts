// Helpers for real-kernel tests: bpffs, a datapath per test file, and event waits.
import { existsSync } from 'node:fs';
import { ensureBpffs, requireRoot } from '../../src/kernel/bpffs.js';
import { Datapath, DatapathConfig, removePinRoot } from '../../src/kernel/datapath.js';
import { DatapathEvent } from '../../src/kernel/codecs.js';
import { allowRule } from '../../hack/lab/policy.js';

export { allowRule, ensureBpffs, requireRoot };

let n = 0;
export function testPinRoot(tag: string): string {
	return `/sys/fs/bpf/weir-test-${tag}-${process.pid}-${n++}`;
}

/** A datapath in its own pin root, plus an event collector. */
export class TestDatapath {
	readonly events: DatapathEvent[] = [];
	private unsubscribe: (() => void) | undefined;

	private constructor(
		readonly dp: Datapath,
		readonly pinRoot: string,
	) {}

	static async open(tag: string, config?: Partial<DatapathConfig>): Promise<TestDatapath> {
		requireRoot();
		ensureBpffs();
		const pinRoot = testPinRoot(tag);
		const dp = await Datapath.open({ pinRoot, ...(config ? { config } : {}) });
		const t = new TestDatapath(dp, pinRoot);
		// Packet events only: the socket load balancer's refusals have tests of their own.
		t.unsubscribe = dp.subscribe((ev) => {
			if (ev.type !== 'sock-drop') t.events.push(ev);
		});
		return t;
	}

	/** Waits until an event matching `pred` arrived (events are delivered asynchronously). */
	async waitEvent(pred: (ev: DatapathEvent) => boolean, timeoutMs = 2000): Promise<DatapathEvent> {
		const deadline = Date.now() + timeoutMs;
		for (;;) {
			const ev = this.events.find(pred);
			if (ev) return ev;
			if (Date.now() > deadline) {
				throw new Error(`no matching event within ${timeoutMs} ms; got ${JSON.stringify(this.events.slice(-5), bigintJson)}`);
			}
			await new Promise((r) => setTimeout(r, 10));
		}
	}

	/** Lets in-flight events arrive, then returns and clears the collected ones. */
	async drain(ms = 150): Promise<DatapathEvent[]> {
		await new Promise((r) => setTimeout(r, ms));
		return this.events.splice(0);
	}

	destroy(): void {
		this.unsubscribe?.();
		this.unsubscribe = undefined;
		try {
			this.dp.destroy();
		} finally {
			removePinRoot(this.pinRoot);
		}
	}
}

export function bigintJson(_k: string, v: unknown): unknown {
	return typeof v === 'bigint' ? v.toString() : v;
}

export function pinExists(path: string): boolean {
	return existsSync(path);
}
