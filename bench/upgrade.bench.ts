// Upgrade benchmark: prints figures, never asserts.
//   node dist/bench/upgrade.bench.js [--rounds 2]     (root; part of scripts/bench.sh)
//
// Weir installed from deploy/ on the local two-node cluster, as the install test does,
// with the segregation scenario and its NetworkPolicy. Then `rounds` in-place upgrades
// of the weir-agent DaemonSet (alternating between two tags of the same image) while
// app streams to redis across nodes, a Redis PING every 200 ms, and apache knocks on
// redis with new connections (test/helpers/rollout.ts). Per rollout: its duration; the
// gaps between the stream's answers during the rollout next to the same stream's gaps
// in the 10 s before it (the baseline); the longest stall (the figure the install test
// used to hold under 3 s); the attacker's refused and answered knocks.
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startCluster } from '../hack/cluster/cluster.js';
import { waitFor } from '../hack/cluster/exec.js';
import { applyDeploy, loadAgentImage, waitWeirReady } from '../hack/demo/install.js';
import { deployScenario, placement, probe, redisPolicy, waitScenario } from '../hack/demo/scenario.js';
import { defaultAgentRef } from '../hack/image/agent-image.js';
import { requireRoot } from '../test/helpers/bpf.js';
import { gapsBetween, rolloutUnderTraffic } from '../test/helpers/rollout.js';
import { spread } from './stats.js';

const QUIET_MS = 10_000;

async function main(): Promise<void> {
	const { values } = parseArgs({ options: { rounds: { type: 'string', default: '2' } } });
	const rounds = Number(values.rounds);
	requireRoot();
	console.log(`# Weir upgrade benchmark (${new Date().toISOString()})`);
	const quiet = (): void => undefined;
	const k = await startCluster({ name: 'wbupgrade', cni: 'none', coreDns: false, log: quiet });
	const archives: string[] = [];
	try {
		const release = await loadAgentImage(k, quiet);
		const other = await loadAgentImage(k, quiet, `${defaultAgentRef()}-bench`);
		archives.push(other.archive);
		await applyDeploy(k);
		await waitWeirReady(k, quiet, 240_000);
		await deployScenario(k, placement(k.nodes.map((n) => n.name)));
		const pods = await waitScenario(k, 180_000);
		const [app, apache, redis] = ['app', 'apache', 'redis'].map((n) => pods.get(n)!);
		await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(redisPolicy()) });
		await waitFor('the policy enforced', 30_000, async () => ((await probe(k, apache!, redis!, 6379)).ok ? undefined : true), 500);

		console.log(`## in-place upgrade of weir-agent on 2 nodes under traffic (app -> redis across nodes, a PING every 200 ms), ${rounds} rollouts`);
		for (let i = 0; i < rounds; i++) {
			const ref = i % 2 === 0 ? other.ref : release.ref;
			const r = await rolloutUnderTraffic(k, { app: app!, apache: apache!, redis: redis! }, ref, quiet, { quietMs: QUIET_MS });
			// A stall that outlasts the rollout ends with the first answer after it.
			const during = gapsBetween(r.pongs, r.started, r.pongs.find((t) => t > r.finished) ?? r.finished);
			const before = gapsBetween(r.pongs, r.started - QUIET_MS, r.started);
			console.log(`rollout ${i + 1} to ${ref}: ${((r.finished - r.started) / 1000).toFixed(1)} s; stream ${r.streamOpen ? 'open' : 'CLOSED'} after it`);
			console.log(`  gaps between answers during the rollout: ${during.length ? spread(during) : 'no answer during the rollout'}`);
			console.log(`  baseline, the ${QUIET_MS / 1000} s before it:          ${spread(before)}`);
			console.log(`  attacker: ${r.denied} refused, ${r.leaks} answered`);
		}
	} finally {
		for (const a of archives) rmSync(a, { force: true }); // the image cache keeps only the release tag
		const rep = await k.stop();
		if (rep.left.length) console.log(`the cluster left behind: ${rep.left.join('; ')}`);
	}
}

await main();
