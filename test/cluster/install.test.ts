// Weir installed on the local cluster exactly as a kind user installs it: no CNI, the
// agent image imported into each node's containerd, `kubectl apply -k deploy/`. Then:
// nodes and agents Ready, the segregation scenario Running, its NetworkPolicy, the
// connectivity matrix, the drop in `weir observe`, `weir status`; an in-place upgrade
// while a client streams to a server across nodes and an attacker keeps knocking (the
// stream survives, the attacker never gets through); uninstall leaves the nodes clean,
// and another plugin's CNI config on the nodes is untouched throughout.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster, clusterStatus, type Cluster } from '../../hack/cluster/cluster.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { waitFor } from '../../hack/cluster/exec.js';
import { agentDiagnostics, applyDeploy, loadAgentImage, nodeLeftovers, uninstallWeir, waitWeirReady, WEIR_NS } from '../../hack/demo/install.js';
import { forwardObservers } from '../../hack/demo/observer-forward.js';
import { placement, deployScenario, probe, redisPolicy, waitScenario, formatProbe, POLICY_NAME, type PodRef } from '../../hack/demo/scenario.js';
import { defaultAgentRef } from '../../hack/image/agent-image.js';
import { repoRoot } from '../../src/shared/package.js';
import { rolloutUnderTraffic } from '../helpers/rollout.js';

const NAME = 'winst';
const BYSTANDER_FILE = '50-bystander.conflist';
const BYSTANDER = JSON.stringify({
	cniVersion: '1.0.0',
	name: 'bystander',
	plugins: [{ type: 'bridge', bridge: 'by0', ipam: { type: 'host-local', subnet: '10.250.0.0/24' } }],
});
const OBSERVER_PORT = 29962;
let c: Cluster | undefined;
let pids: number[] = [];
let pods = new Map<string, PodRef>();

function cluster(): Cluster {
	assert.ok(c, 'the cluster did not start');
	return c;
}

function weirCli(args: string[]): Promise<{ code: number; out: string }> {
	return new Promise((resolve) => {
		const child = spawn(process.execPath, [join(repoRoot, 'dist', 'src', 'cli', 'main.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
		let out = '';
		child.stdout.on('data', (d: Buffer) => (out += d.toString()));
		child.stderr.on('data', (d: Buffer) => (out += d.toString()));
		child.on('close', (code) => resolve({ code: code ?? 1, out }));
	});
}

before(async () => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	c = await startCluster({ name: NAME, cni: 'none', coreDns: false, log: () => {} });
	pids = clusterStatus(NAME).processes.map((p) => p.pid);
});

after(async () => {
	if (c) {
		const rep = await c.stop();
		assert.deepEqual(rep.left, [], 'the cluster left nothing behind');
		assert.deepEqual(await leftovers(NAME, pids), []);
	}
});

test(
	'kubectl apply -k deploy/ on a cluster with no CNI: agents Ready, nodes Ready, Weir conflist and weir-cni on every node',
	{ timeout: 600_000 },
	async (t) => {
		const k = cluster();
		const before = await k.kubectl(['get', 'nodes', '-o', 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}']);
		assert.deepEqual(before.stdout.trim().split(' '), ['False', 'False'], 'no CNI yet: nodes NotReady');
		// A CNI config that is not Weir's (another plugin's, sorting after Weir's 05-): it
		// must be left exactly as it is by install and uninstall.
		for (const n of k.nodes) {
			await k.nodeExec(n.name, ['sh', '-c', `printf '%s' '${BYSTANDER}' > /etc/cni/net.d/${BYSTANDER_FILE}`]);
		}
		const img = await loadAgentImage(k, (m) => t.diagnostic(m));
		assert.equal(img.ref, defaultAgentRef());
		t.diagnostic(`image ${img.ref}: ${(img.bytes / 1e6).toFixed(1)} MB`);
		await applyDeploy(k);
		await waitWeirReady(k, (m) => t.diagnostic(m), 240_000);
		for (const n of k.nodes) {
			const files = await k.nodeExec(n.name, ['sh', '-c', 'ls /etc/cni/net.d /opt/cni/bin']);
			assert.match(files.stdout, /weir\.conflist/, `${n.name}: Weir's conflist written`);
			assert.equal((await k.nodeExec(n.name, ['cat', `/etc/cni/net.d/${BYSTANDER_FILE}`])).stdout, BYSTANDER, `${n.name}: the other CNI config is untouched`);
			assert.match(files.stdout, /\bweir-cni\b/, `${n.name}: weir-cni installed`);
			const pins = await k.nodeExec(n.name, ['ls', '/sys/fs/bpf/weir']);
			assert.match(pins.stdout, /weir_policy/, `${n.name}: datapath pinned`);
		}
	},
);

test('segregation scenario: pods Running on both nodes, the policy gives the expected matrix', { timeout: 600_000 }, async (t) => {
	const k = cluster();
	await deployScenario(k, placement(k.nodes.map((n) => n.name)));
	try {
		pods = await waitScenario(k, 180_000, (m) => t.diagnostic(m));
	} catch (err) {
		t.diagnostic(await agentDiagnostics(k));
		throw err;
	}
	const [ingress, apache, app, redis] = ['ingress', 'apache', 'app', 'redis'].map((n) => pods.get(n)!) as [PodRef, PodRef, PodRef, PodRef];
	assert.notEqual(app.node, redis.node, 'app -> redis crosses nodes');
	for (const p of pods.values()) {
		const podCidr = k.nodes.find((n) => n.name === p.node)!.podCIDR;
		assert.ok(p.ip.startsWith(podCidr.split('.').slice(0, 3).join('.') + '.'), `${p.pod} ${p.ip} in ${podCidr}`);
	}
	// Without a policy everyone reaches redis.
	for (const from of [app, apache]) {
		const r = await probe(k, from, redis, 6379);
		t.diagnostic(formatProbe(r));
		assert.ok(r.ok, `before the policy: ${formatProbe(r)}`);
	}
	await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(redisPolicy()) });
	await waitFor('the policy enforced', 30_000, async () => ((await probe(k, apache, redis, 6379)).ok ? undefined : true), 500);
	const matrix: Array<[PodRef, PodRef, 6379 | 8080, boolean]> = [
		[app, redis, 6379, true],
		[apache, redis, 6379, false],
		[ingress, redis, 6379, false],
		[app, redis, 8080, false], // only 6379 is admitted
		[ingress, apache, 8080, true], // namespaces without a policy stay open
		[apache, app, 8080, true],
	];
	const got: string[] = [];
	for (const [from, to, port, want] of matrix) {
		const r = await probe(k, from, to, port);
		got.push(`${formatProbe(r)}${r.ok === want ? '' : '   <-- UNEXPECTED'}`);
	}
	t.diagnostic(got.join('\n'));
	assert.ok(!got.some((l) => l.includes('UNEXPECTED')), got.join('\n'));
	// A Service ClusterIP works too (kube-proxy DNAT; the datapath sees the backend at redis).
	const svc = (await k.kubectl(['-n', 'd-redis', 'get', 'svc', 'redis', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
	assert.ok((await probe(k, app, redis, 6379, svc)).ok, 'app -> redis via its ClusterIP');
});

test('weir observe shows the DROPPED flow with its reason and policy; weir status is healthy', { timeout: 120_000 }, async (t) => {
	const k = cluster();
	const redis = pods.get('redis');
	const apache = pods.get('apache');
	assert.ok(redis && apache, 'the scenario ran');
	const fwd = await forwardObservers(k, OBSERVER_PORT);
	const server = fwd.find((f) => f.node === redis.node)!.url;
	await probe(k, apache, redis, 6379);
	const obs = await weirCli(['observe', '--server', server, '--verdict', 'DROPPED', '--namespace', 'd-redis', '--last', '20']);
	t.diagnostic(obs.out);
	assert.equal(obs.code, 0, obs.out);
	const line = obs.out.split('\n').find((l) => l.includes('b-apache/') && l.includes('d-redis/'));
	assert.ok(line, `a DROPPED flow from b-apache to d-redis:\n${obs.out}`);
	assert.match(line, /DROPPED/);
	assert.match(line, new RegExp(POLICY_NAME));
	const json = await weirCli(['observe', '--server', server, '--verdict', 'DROPPED', '--namespace', 'd-redis', '--last', '20', '-o', 'json']);
	const flows = json.out
		.trim()
		.split('\n')
		.map((l) => JSON.parse(l) as { dropReason?: string; source: { namespace?: string } });
	assert.ok(
		flows.some((f) => f.source.namespace === 'b-apache' && f.dropReason === 'POLICY_DENIED'),
		json.out,
	);

	const st = await weirCli(['status', '--kubeconfig', k.kubeconfig]);
	t.diagnostic(st.out);
	assert.equal(st.code, 0, st.out);
	assert.match(st.out, /healthy on every node/);
	const js = JSON.parse((await weirCli(['status', '--kubeconfig', k.kubeconfig, '-o', 'json'])).out) as {
		nodes: Array<{ node: string; status?: { ready: boolean; datapath: { loaded: boolean; attachments: number }; policy: { enforcedHere: string[] } } }>;
	};
	assert.equal(js.nodes.length, 2);
	const atRedis = js.nodes.find((n) => n.node === redis.node)!.status!;
	assert.ok(atRedis.ready && atRedis.datapath.loaded && atRedis.datapath.attachments >= 1);
	assert.deepEqual(atRedis.policy.enforcedHere, [`d-redis/${POLICY_NAME}`]);
});

test('upgrade in place: a stream across nodes survives the rollout and the policy never lapses', { timeout: 600_000 }, async (t) => {
	const k = cluster();
	const app = pods.get('app');
	const apache = pods.get('apache');
	const redis = pods.get('redis');
	assert.ok(app && apache && redis, 'the scenario ran');
	// The new version: same content, new tag (loaded first, so that building and
	// importing it does not overlap the rollout).
	const newRef = `${defaultAgentRef()}-upgrade`;
	const upgrade = await loadAgentImage(k, (m) => t.diagnostic(m), newRef);
	t.after(() => rmSync(upgrade.archive, { force: true })); // the cache keeps only the release tag
	// How long the stream stalls is a figure of `scripts/bench.sh upgrade`, not a goal here.
	const r = await rolloutUnderTraffic(k, { app, apache, redis }, newRef, (m) => t.diagnostic(m));
	const during = r.pongs.filter((p) => p >= r.started && p <= r.finished).length;
	const afterwards = r.pongs.filter((p) => p > r.finished).length;
	t.diagnostic(
		`rollout ${r.finished - r.started} ms; stream: ${r.pongs.length} PONGs, ${during} during the rollout, ${afterwards} after; attacker: ${r.denied} denied, ${r.leaks} answered`,
	);
	assert.deepEqual(r.images, [newRef, newRef], 'every agent runs the new image');
	assert.deepEqual(r.daemonSet, { desired: 2, ready: 2, updated: 2 });
	assert.ok(r.streamOpen, 'the streaming connection is still open');
	assert.ok(during > 0, 'the stream was answered while the rollout was under way');
	assert.ok(afterwards > 0, 'the stream is still answered after the rollout');
	assert.equal(r.leaks, 0, 'no connection from b-apache reached redis during the rollout');
	assert.ok(r.denied >= 3 && r.deniedAfter > 0, 'the attacker kept trying through the rollout, and was refused after it');
});

test('uninstall (deploy/uninstall.sh): no Weir program attached, no pins, no Weir CNI files on any node', { timeout: 300_000 }, async (t) => {
	const k = cluster();
	await uninstallWeir(k, (m) => t.diagnostic(m));
	for (const n of k.nodes) {
		assert.deepEqual(await nodeLeftovers(k, n.name), [], `${n.name} is clean`);
		assert.equal(
			(await k.nodeExec(n.name, ['cat', `/etc/cni/net.d/${BYSTANDER_FILE}`])).stdout,
			BYSTANDER,
			`${n.name}: the other CNI config survives uninstall`,
		);
		// The node's own loopback (installed by the cluster, not by Weir) stays.
		assert.match((await k.nodeExec(n.name, ['ls', '/opt/cni/bin'])).stdout, /loopback/);
	}
	const ns = await k.kubectl(['get', 'namespace', WEIR_NS], { allowFail: true });
	assert.notEqual(ns.code, 0, 'weir-system is gone');
	const roles = await k.kubectl(['get', 'clusterrole', 'weir-agent'], { allowFail: true });
	assert.notEqual(roles.code, 0, 'the ClusterRole is gone');
});
