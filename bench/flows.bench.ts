// Flows benchmark: prints figures, never asserts.
//   node dist/bench/flows.bench.js [--rounds 30]     (root; part of scripts/bench.sh)
//
// The policy lab of the cluster test (test/helpers/policy-lab.ts): a real
// kube-apiserver, a real weir-agent, lab pods with the programs attached. Each round
// writes the segregation scenario's NetworkPolicy through the API and measures, from
// the moment the write is sent:
//   enforced  until the first apache -> redis SYN is refused (the send time of the
//             probe that was refused; probes run back to back)
//   visible   until that drop's flow arrives on a live follow of the agent's flow API
// and, per drop, the refused SYN's send time to its flow's arrival (the figure the
// cluster test used to hold under 1 s). Then the policy is deleted and the time until
// apache connects again is measured. Baselines from the same run: an allowed probe's
// round trip through the same prober (the probe's own cost) and GET /v1/flows's.
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { Flow } from '../src/observe/flow.js';
import { PolicyLab, POLICY, REDIS, typedPolicy } from '../test/helpers/policy-lab.js';
import { spread } from './stats.js';

const DEADLINE_MS = 30_000;

/** A live `follow=true` stream of the flow API; every flow with its arrival time. */
class FlowFollower {
	readonly arrivals: Array<{ at: number; flow: Flow }> = [];
	private readonly abort = new AbortController();
	private done: Promise<void> = Promise.resolve();
	private failed: Error | undefined;

	static async open(url: string): Promise<FlowFollower> {
		const f = new FlowFollower();
		const res = await fetch(url, { signal: f.abort.signal });
		if (!res.ok || !res.body) throw new Error(`${url}: ${res.status}`);
		f.done = f.read(res.body);
		return f;
	}

	private async read(body: ReadableStream<Uint8Array>): Promise<void> {
		const decoder = new TextDecoder();
		let buf = '';
		try {
			for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
				const at = performance.now();
				buf += decoder.decode(chunk, { stream: true });
				let nl: number;
				while ((nl = buf.indexOf('\n')) >= 0) {
					const line = buf.slice(0, nl);
					buf = buf.slice(nl + 1);
					if (line) this.arrivals.push({ at, flow: JSON.parse(line) as Flow });
				}
			}
		} catch (err) {
			if (!this.abort.signal.aborted) this.failed = err as Error;
		}
	}

	/** The first flow from index `from` on that matches. */
	async next(from: number, pred: (f: Flow) => boolean, what: string): Promise<{ at: number; flow: Flow }> {
		const t0 = performance.now();
		for (;;) {
			const hit = this.arrivals.slice(from).find((a) => pred(a.flow));
			if (hit) return hit;
			if (this.failed) throw new Error(`the follow stream broke: ${this.failed.message}`);
			if (performance.now() - t0 > DEADLINE_MS) throw new Error(`no ${what} on the follow stream within ${DEADLINE_MS} ms`);
			await new Promise((r) => setTimeout(r, 1));
		}
	}

	async close(): Promise<void> {
		this.abort.abort();
		await this.done;
	}
}

/** Probes back to back until one answers `want`; returns the send time of that probe. */
async function probeUntil(lab: PolicyLab, want: boolean, since: number, what: string): Promise<number> {
	for (;;) {
		const sent = performance.now();
		if ((await lab.probe('apache', 'redis', REDIS, 300)) === want) return sent;
		if (sent - since > DEADLINE_MS) throw new Error(`${what} not seen within ${DEADLINE_MS} ms`);
	}
}

async function timed(n: number, f: () => Promise<unknown>): Promise<number[]> {
	const out: number[] = [];
	for (let i = 0; i < n; i++) {
		const t0 = performance.now();
		await f();
		out.push(performance.now() - t0);
	}
	return out;
}

async function main(): Promise<void> {
	const { values } = parseArgs({ options: { rounds: { type: 'string', default: '30' } } });
	const rounds = Number(values.rounds);
	console.log(`# Weir flows benchmark (${new Date().toISOString()})`);
	const lab = await PolicyLab.start({ name: 'wflows', subnet: 241, tag: 'bench-flows', agentLogLevel: 'warn' });
	try {
		const kc = new k8s.KubeConfig();
		kc.loadFromFile(lab.cluster!.kubeconfig);
		const net = kc.makeApiClient(k8s.NetworkingV1Api);
		const { name, namespace } = POLICY.metadata;

		const probeRtt = await timed(50, async () => {
			if (!(await lab.probe('app', 'redis'))) throw new Error('app -> redis does not connect');
		});
		const apiRtt = await timed(50, () => lab.flows('limit=1'));

		const follower = await FlowFollower.open(`${lab.observer}/v1/flows?follow=true&verdict=DROPPED&pod=d-redis/redis&since=${new Date().toISOString()}`);
		const enforced: number[] = [];
		const visible: number[] = [];
		const dropToFlow: number[] = [];
		const restored: number[] = [];
		try {
			for (let i = 0; i < rounds; i++) {
				const mark = follower.arrivals.length;
				const t0 = performance.now();
				await net.createNamespacedNetworkPolicy({ namespace, body: typedPolicy(POLICY) });
				const refused = await probeUntil(lab, false, t0, `round ${i}: the policy enforced`);
				const seen = await follower.next(
					mark,
					(f) => f.source.pod === 'apache' && f.destination.pod === 'redis' && f.dropReason === 'POLICY_DENIED',
					`round ${i}: apache -> redis drop`,
				);
				enforced.push(refused - t0);
				visible.push(seen.at - t0);
				dropToFlow.push(seen.at - refused);
				const t1 = performance.now();
				await net.deleteNamespacedNetworkPolicy({ name, namespace });
				await probeUntil(lab, true, t1, `round ${i}: apache -> redis connecting again`);
				restored.push(performance.now() - t1);
			}
		} finally {
			await follower.close();
		}
		console.log(`## policy write -> drop in the flow API: real kube-apiserver, real weir-agent, lab pods, ${rounds} rounds`);
		console.log(`API write -> first apache -> redis SYN refused:      ${spread(enforced)}`);
		console.log(`API write -> that drop's flow on /v1/flows?follow:   ${spread(visible)}`);
		console.log(`refused SYN sent -> its flow on /v1/flows?follow:    ${spread(dropToFlow)}`);
		console.log(`API delete -> apache connects again:                 ${spread(restored)}`);
		console.log(`baseline: allowed probe round trip (app -> redis):   ${spread(probeRtt)}`);
		console.log(`baseline: GET /v1/flows?limit=1 round trip:          ${spread(apiRtt)}`);
	} finally {
		await lab.destroy();
	}
}

await main();
