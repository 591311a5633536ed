// An in-place upgrade of the weir-agent DaemonSet under traffic, shared by the install
// test (which asserts what happened) and the upgrade benchmark (which prints how long
// the stream stalled): one TCP connection app -> redis across nodes with a Redis PING
// every 200 ms, and apache knocking on redis with new connections, where any answer
// is a lapse of the policy.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Cluster } from '../../hack/cluster/cluster.js';
import { sleep, waitFor } from '../../hack/cluster/exec.js';
import { daemonSetStatus, waitWeirReady, WEIR_NS, type DsStatus } from '../../hack/demo/install.js';
import type { PodRef } from '../../hack/demo/scenario.js';

export interface ExecStream {
	/** output lines with their arrival time (Date.now()) */
	lines: Array<{ t: number; l: string }>;
	child: ChildProcess;
	exited: () => boolean;
}

/** A long-running `kubectl exec` whose output lines are collected with their arrival time. */
export function execStream(k: Cluster, ns: string, pod: string, script: string): ExecStream {
	const child = spawn(k.bins.kubectl, ['--kubeconfig', k.kubeconfig, '-n', ns, 'exec', pod, '--', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
	const lines: Array<{ t: number; l: string }> = [];
	let buf = '';
	let done = false;
	child.stdout!.on('data', (d: Buffer) => {
		buf += d.toString();
		let i: number;
		while ((i = buf.indexOf('\n')) >= 0) {
			lines.push({ t: Date.now(), l: buf.slice(0, i).trim() });
			buf = buf.slice(i + 1);
		}
	});
	child.on('close', () => (done = true));
	return { lines, child, exited: () => done };
}

export interface RolloutRun {
	/** `kubectl set image` sent (Date.now()) */
	started: number;
	/** every agent on the new image and Ready, every node Ready */
	finished: number;
	/** arrival times of the stream's answers (+PONG) */
	pongs: number[];
	/** the streaming connection was still open after the rollout */
	streamOpen: boolean;
	/** the attacker's new connections: answered (a lapse), refused */
	leaks: number;
	denied: number;
	/** the attacker's attempts that ended after the rollout */
	deniedAfter: number;
	/** the agents' images, and the DaemonSet's counts, once finished */
	images: string[];
	daemonSet: DsStatus | undefined;
}

/**
 * Rolls the DaemonSet to `ref` while the stream and the attacker run. `quietMs` of
 * traffic before the rollout give a baseline; afterwards it waits (a timeout, not a
 * goal) for the stream's next answer and the attacker's next attempts.
 */
export async function rolloutUnderTraffic(
	k: Cluster,
	pods: { app: PodRef; apache: PodRef; redis: PodRef },
	ref: string,
	log: (m: string) => void,
	opts: { quietMs?: number } = {},
): Promise<RolloutRun> {
	const { app, apache, redis } = pods;
	const stream = execStream(k, app.namespace, app.pod, `(while true; do printf 'PING\\r\\n'; sleep 0.2; done) | nc ${redis.ip} 6379`);
	const knock = execStream(
		k,
		apache.namespace,
		apache.pod,
		`while true; do if printf 'PING\\r\\n' | timeout 1 nc -w 1 ${redis.ip} 6379 | grep -q PONG; then echo LEAK; else echo denied; fi; done`,
	);
	const pongs = (): number[] => stream.lines.filter((l) => l.l === '+PONG').map((l) => l.t);
	try {
		await waitFor('the stream flowing', 60_000, async () => (pongs().length >= 5 ? true : undefined), 200);
		await waitFor('the attacker knocking', 60_000, async () => (knock.lines.length >= 2 ? true : undefined), 200);
		if (opts.quietMs) await sleep(opts.quietMs);
		const started = Date.now();
		await k.kubectl(['-n', WEIR_NS, 'set', 'image', 'daemonset/weir-agent', `agent=${ref}`, `host-setup=${ref}`]);
		await k.kubectl(['-n', WEIR_NS, 'rollout', 'status', 'daemonset/weir-agent', '--timeout=240s'], { timeoutMs: 250_000 });
		await waitWeirReady(k, log, 120_000);
		const images = (
			await k.kubectl(['-n', WEIR_NS, 'get', 'pods', '-l', 'app.kubernetes.io/name=weir-agent', '-o', 'jsonpath={.items[*].spec.containers[0].image}'])
		).stdout
			.trim()
			.split(' ');
		const daemonSet = await daemonSetStatus(k);
		const finished = Date.now();
		const after = (): boolean => pongs().some((t) => t > finished) && knock.lines.filter((l) => l.t > finished).length >= 3;
		await waitFor(
			'the stream answered and the attacker refused after the rollout',
			30_000,
			async () => (after() || stream.exited() ? true : undefined),
			200,
		).catch(() => undefined);
		return {
			started,
			finished,
			pongs: pongs(),
			streamOpen: !stream.exited(),
			leaks: knock.lines.filter((l) => l.l === 'LEAK').length,
			denied: knock.lines.filter((l) => l.l === 'denied').length,
			deniedAfter: knock.lines.filter((l) => l.l === 'denied' && l.t > finished).length,
			images,
			daemonSet,
		};
	} finally {
		stream.child.kill('SIGKILL');
		knock.child.kill('SIGKILL');
	}
}

/** Gaps between consecutive answers that ended in (from, to]. */
export function gapsBetween(times: number[], from: number, to: number): number[] {
	const out: number[] = [];
	for (let i = 1; i < times.length; i++) if (times[i]! > from && times[i]! <= to) out.push(times[i]! - times[i - 1]!);
	return out;
}
