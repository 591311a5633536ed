// Weir's main job, end to end (the README's quick start, scripts/demo.sh):
//   a local Kubernetes cluster with no CNI -> the agent image imported into every node
//   -> kubectl apply -k deploy/ -> nodes Ready (Weir wires every pod) -> the segregation
//   scenario -> NetworkPolicy in d-redis admitting only c-app -> who can reach redis ->
//   the flows, the DROPPED one included (weir observe, through the cluster-wide relay)
//   -> weir status -> the web UI (weir ui), its URL printed.
// The cluster is left running; the next commands are printed at the end.
//   node dist/hack/demo/cluster-demo.js [--name weir]       run it
//   node dist/hack/demo/cluster-demo.js --down [--name weir] stop it
import { parseArgs } from 'node:util';
import { startCluster, stopCluster, type Cluster } from '../cluster/cluster.js';
import { waitFor } from '../cluster/exec.js';
import { coreDnsManifests } from '../cluster/configs.js';
import { agentDiagnostics, applyDeploy, loadAgentImage, waitControllerReady, waitWeirReady } from './install.js';
import { forwardObservers, type ObserverForward } from './observer-forward.js';
import { startUiForward, type UiForward } from './ui-forward.js';
import { weirCli } from './weir-cli.js';
import { POLICY_NAME, deployScenario, formatProbe, placement, probe, redisPolicy, waitScenario, type PodRef } from './scenario.js';
import { repoRoot } from '../../src/shared/package.js';

// scripts/demo.sh passes its start time, so the figures include the build step.
const T0 = Number(process.env['WEIR_DEMO_T0']) || Date.now();
const elapsed = (): string => `${((Date.now() - T0) / 1000).toFixed(0).padStart(4)}s`;
const say = (s: string): void => void process.stdout.write(`${s}\n`);
const step = (n: number, total: number, s: string): void => say(`\n==> [${n}/${total}] ${s}  (${elapsed()})`);
const progress = (s: string): void => say(`      ${s}`);

async function run(name: string): Promise<void> {
	const TOTAL = 8;
	step(1, TOTAL, `starting the local cluster "${name}" with no CNI (first run: builds Kubernetes from its Go modules, ~10 min)`);
	const c: Cluster = await startCluster({ name, cni: 'none', coreDns: false, log: progress });
	try {
		step(2, TOTAL, 'building the Weir agent image (no Docker daemon) and loading it into each node');
		const img = await loadAgentImage(c, progress);

		step(3, TOTAL, 'installing Weir: kubectl apply -k deploy/');
		await applyDeploy(c);
		await waitWeirReady(c, progress);
		await waitControllerReady(c, progress);
		progress('CoreDNS (its pods are wired by Weir)');
		await c.kubectl(['apply', '-f', '-'], { input: JSON.stringify(coreDnsManifests(c.images.coredns)) });

		step(4, TOTAL, 'segregation scenario: a-ingress/ingress, b-apache/apache, c-app/app, d-redis/redis');
		await deployScenario(c, placement(c.nodes.map((n) => n.name)));
		const pods = await waitScenario(c, 120_000, progress);
		for (const p of pods.values()) progress(`${`${p.namespace}/${p.pod}`.padEnd(34)} ${p.ip.padEnd(14)} on ${p.node}`);
		const redis = pods.get('redis')!;
		const app = pods.get('app')!;
		const apache = pods.get('apache')!;
		say('    before any policy:');
		for (const from of [app, apache]) say(formatProbe(await probe(c, from, redis, 6379)));

		step(5, TOTAL, `NetworkPolicy d-redis/${POLICY_NAME}: redis admits only namespace c-app on TCP 6379`);
		await c.kubectl(['apply', '-f', '-'], { input: JSON.stringify(redisPolicy()) });
		const since = new Date().toISOString();
		// Enforcement follows the API within moments; wait until apache is refused.
		let denied = await probe(c, apache, redis, 6379);
		await waitFor(
			'the policy enforced',
			30_000,
			async () => {
				if (!denied.ok) return true;
				denied = await probe(c, apache, redis, 6379);
				return denied.ok ? undefined : true;
			},
			500,
		);
		say('    with the policy:');
		const allowed = await probe(c, app, redis, 6379);
		say(formatProbe(allowed));
		say(formatProbe(denied));
		if (!allowed.ok) throw new Error(`c-app/app cannot reach redis with the policy in place (${allowed.detail})`);

		step(6, TOTAL, 'flows to redis:6379, cluster-wide through the relay, read with weir observe');
		const forwards = await forwardObservers(c);
		const obs = await weirCli(['observe', '--kubeconfig', c.kubeconfig, '--to-namespace', 'd-redis', '--to-port', '6379', '--since', since, '--last', '8']);
		for (const l of obs.out.trimEnd().split('\n')) say(`    ${l}`);
		if (!/DROPPED/.test(obs.out)) throw new Error(`weir observe shows no DROPPED flow to redis:\n${obs.out}`);

		step(7, TOTAL, 'weir status');
		const st = await weirCli(['status', '--kubeconfig', c.kubeconfig]);
		for (const l of st.out.trimEnd().split('\n')) say(`    ${l}`);

		step(8, TOTAL, 'the web UI: service map and flows (weir ui, through the API server to the relay)');
		const ui = await startUiForward(c, 12000);
		say(`    Weir UI: ${ui.url}`);

		printNext(c, forwards, redis, img.ref, ui);
	} catch (err) {
		say(`\nthe demo failed: ${(err as Error).message}`);
		say(await agentDiagnostics(c));
		say(`stopping the cluster; logs kept in ${c.logDir}`);
		await c.stop({ keepLogs: true });
		throw err;
	}
}

function printNext(c: Cluster, forwards: ObserverForward[], redis: PodRef, ref: string, ui: UiForward): void {
	const kubectl = `${c.bins.kubectl} --kubeconfig ${c.kubeconfig}`;
	say(`\nWeir (${ref}) is running on the local cluster "${c.name}" — done in ${elapsed().trim()}. Next:`);
	say('');
	say(`  export KUBECONFIG=${c.kubeconfig}`);
	say(`  alias kubectl='${c.bins.kubectl}'`);
	say('  kubectl get pods -A -o wide');
	say('  kubectl -n weir-system logs ds/weir-agent -c agent');
	say('');
	say(`  # the web UI (weir ui is running; or: kubectl -n weir-system port-forward svc/weir-relay 4245):`);
	say(`  ${ui.url}`);
	say('');
	say(`  cd ${repoRoot}`);
	say('  # flows of the whole cluster, live, through the relay:');
	say(`  node dist/src/cli/main.js observe --kubeconfig ${c.kubeconfig} -f`);
	say(`  node dist/src/cli/main.js observe --kubeconfig ${c.kubeconfig} --verdict DROPPED -o table`);
	say('  # one node agent directly:');
	for (const f of forwards) say(`  node dist/src/cli/main.js observe --server ${f.url} -f${f.node === redis.node ? '     # redis is here' : ''}`);
	say(`  node dist/src/cli/main.js status --kubeconfig ${c.kubeconfig}`);
	say('');
	say('  # try it yourself (with the alias above):');
	say(`  kubectl -n b-apache exec deploy/apache -- sh -c "printf 'PING\\r\\n' | timeout 4 nc -w 3 ${redis.ip} 6379"   # dropped`);
	say(`  kubectl -n c-app exec deploy/app -- sh -c "printf 'PING\\r\\n' | timeout 4 nc -w 3 ${redis.ip} 6379"      # +PONG`);
	say(`  kubectl -n d-redis delete networkpolicy ${POLICY_NAME}`);
	say('');
	say('  # uninstall Weir (restores the nodes), then stop the cluster:');
	say(`  KUBECTL="${kubectl}" deploy/uninstall.sh`);
	say(`  bash scripts/demo.sh --down`);
}

async function main(): Promise<number> {
	const { values } = parseArgs({ options: { name: { type: 'string', default: 'weir' }, down: { type: 'boolean', default: false } } });
	const name = values.name ?? 'weir';
	if (values.down) {
		const rep = await stopCluster(name);
		say(`cluster "${name}" stopped (${rep.killed} processes); ${rep.left.length ? `left behind: ${rep.left.join('; ')}` : 'nothing left behind'}`);
		return rep.left.length ? 1 : 0;
	}
	if (process.getuid?.() !== 0) {
		say('the demo needs root (network namespaces, containerd, eBPF): bash scripts/demo.sh as root');
		return 1;
	}
	await run(name);
	return 0;
}

main().then(
	(code) => process.exit(code),
	(err: Error) => {
		process.stderr.write(`demo: ${err.message}\n`);
		process.exit(1);
	},
);
