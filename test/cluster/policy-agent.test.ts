// The policy agent against a real kube-apiserver (control-plane mode of the local
// cluster) and the real datapath on lab pod namespaces: the segregation scenario
// applied with kubectl, the drop seen through `weir observe`, and the faults: the agent
// killed and restarted while traffic flows, the API server gone for 60 seconds.
//
// Pods here are API objects bound to a lab node with no kubelet; their network is
// the lab topology's, and their addresses are written to the pod status as a kubelet
// would. The agent reads its local endpoints from a file (the CNI's job on a node).
// The lab itself is test/helpers/policy-lab.ts (the flows benchmark uses it too).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { Datapath } from '../../src/kernel/datapath.js';
import { Flow } from '../../src/observe/flow.js';
import { repoRoot } from '../../src/shared/package.js';
import { NODE, PolicyLab, POLICY, REDIS, until } from '../helpers/policy-lab.js';

const run = promisify(execFile);
const WEIR = resolve(repoRoot, 'dist/src/cli/main.js');
const POLICY_REF = `${POLICY.metadata.namespace}/${POLICY.metadata.name}`;

let lab: PolicyLab;

const probe = (from: string, to: string, port = REDIS, timeout = 500): Promise<boolean> => lab.probe(from, to, port, timeout);

before(async () => {
	lab = await PolicyLab.start({ name: 'wpolicy', subnet: 240, tag: 'agent' });
});

after(async () => {
	await lab?.destroy();
});

describe('segregation scenario against a real API server', () => {
	test('before any policy every pair connects', async () => {
		const dump = async (): Promise<string> => {
			const dp = await Datapath.open({ pinRoot: lab.pinRoot });
			try {
				return JSON.stringify({
					endpoints: dp.endpointEntries(),
					ipcache: dp.ipcacheEntries(),
					policy: dp.policyEntryCount(),
					metrics: dp.readMetrics().samples.map((m) => `${m.reasonName}/${m.direction}=${m.packets}`),
				});
			} finally {
				dp.close();
			}
		};
		for (const from of ['ingress', 'apache', 'app']) assert.ok(await probe(from, 'redis'), `${from} -> redis; maps: ${await dump()}`);
		assert.ok(await probe('redis', 'app'), 'redis -> app');
	});

	test('kubectl apply: app reaches redis, apache is dropped, and weir observe shows why', async () => {
		// Deadlines here are timeouts, not goals: how fast is `scripts/bench.sh flows`.
		await lab.applyPolicy();
		await until('apache -> redis dropped', 30_000, async () => !(await probe('apache', 'redis', REDIS, 300)));
		assert.ok(await probe('app', 'redis'), 'app -> redis still works');
		assert.ok(!(await probe('ingress', 'redis')), 'ingress -> redis dropped');
		assert.ok(await probe('redis', 'app'), 'redis -> app (egress to c-app) works');
		assert.ok(!(await probe('redis', 'apache', REDIS, 300)), 'redis -> apache (egress) dropped');

		const since = new Date().toISOString();
		assert.ok(!(await probe('apache', 'redis', REDIS, 300)));
		// The agent has the flow (polled through its API)...
		let seen: Flow | undefined;
		await until('the drop in the flow API', 30_000, async () => {
			seen = (await lab.flows(`verdict=DROPPED&since=${since}`)).find((f) => f.source.pod === 'apache' && f.destination.pod === 'redis');
			return seen !== undefined;
		});
		assertPolicyDrop(seen!, since, Date.now());
		// ...and `weir observe` shows it.
		const { stdout } = await run(process.execPath, [
			WEIR,
			'observe',
			'--server',
			lab.observer,
			'--verdict',
			'DROPPED',
			'--pod',
			'd-redis/redis',
			'--since',
			since,
			'-o',
			'json',
		]);
		const flow = stdout
			.split('\n')
			.filter(Boolean)
			.map((l) => JSON.parse(l) as Flow)
			.find((f) => f.source.pod === 'apache');
		assert.ok(flow, 'weir observe prints the drop');
		assertPolicyDrop(flow, since, Date.now());
		const compact = await run(process.execPath, [
			WEIR,
			'observe',
			'--server',
			lab.observer,
			'--verdict',
			'DROPPED',
			'--namespace',
			'b-apache',
			'--port',
			String(REDIS),
		]);
		assert.match(
			compact.stdout,
			/b-apache\/apache:\d+ -> d-redis\/redis:6379 ingress TCP Flags: SYN DROPPED \(POLICY_DENIED: .*isolated by d-redis\/redis-only-from-app\)/,
		);
		const metrics = await (await fetch(`${lab.observer}/metrics`)).text();
		assert.match(metrics, /weir_flows_total\{verdict="DROPPED",reason="POLICY_DENIED",direction="ingress"\} [1-9]/);
		assert.match(metrics, /weir_policy_compile_seconds_count [1-9]/);
	});

	test('deleting the policy restores connectivity', async () => {
		await lab.deletePolicy();
		await until('apache -> redis connects again', 30_000, () => probe('apache', 'redis'));
		assert.ok(await probe('ingress', 'redis'));
	});
});

/** The denied apache -> redis SYN as a flow: both ends, the reason, the isolating policy, and the drop's own time. */
function assertPolicyDrop(f: Flow, since: string, seenAt: number): void {
	assert.equal(f.verdict, 'DROPPED');
	assert.equal(f.dropReason, 'POLICY_DENIED');
	assert.equal(f.node, NODE);
	assert.equal(f.direction, 'ingress');
	assert.equal(f.isReply, false);
	assert.equal(f.protocol, 'TCP');
	assert.deepEqual(f.tcpFlags, ['SYN']);
	assert.deepEqual([f.source.namespace, f.source.pod, f.source.ip], ['b-apache', 'apache', lab.pod('apache').ip]);
	assert.deepEqual([f.destination.namespace, f.destination.pod, f.destination.ip, f.destination.port], ['d-redis', 'redis', lab.pod('redis').ip, REDIS]);
	assert.deepEqual(
		f.isolatedBy?.map((p) => `${p.namespace}/${p.name}`),
		[POLICY_REF],
	);
	const t = Date.parse(f.time);
	assert.ok(
		t >= Date.parse(since) && t <= seenAt,
		`the flow's time ${f.time} lies between the probe (${since}) and its sighting (${new Date(seenAt).toISOString()})`,
	);
}

describe('faults', () => {
	test('agent killed and restarted while traffic flows: enforcement never lapses, allowed connections survive', async () => {
		await lab.applyPolicy();
		await until('policy enforced', 30_000, async () => !(await probe('apache', 'redis', REDIS, 300)));
		const stream = spawn(
			'ip',
			['netns', 'exec', lab.pod('app').netns, process.execPath, resolve(repoRoot, 'dist/hack/lab/probe.js'), 'stream', lab.pod('redis').ip, String(REDIS)],
			{ stdio: ['ignore', 'pipe', 'pipe'] },
		);
		let echoed = '';
		stream.stdout.on('data', (d: Buffer) => (echoed += d.toString()));
		const leaks: string[] = [];
		let probing = true;
		const denier = (async () => {
			while (probing) if (await probe('apache', 'redis', REDIS, 200)) leaks.push(new Date().toISOString());
		})();
		try {
			await until('stream flowing', 30_000, async () => echoed.split('\n').length > 5);
			await lab.stopAgent('SIGKILL');
			await new Promise((r) => setTimeout(r, 1500)); // no agent at all
			lab.startAgent();
			await lab.waitReady();
			await new Promise((r) => setTimeout(r, 1000));
			const lines = echoed.split('\n').length;
			await until('stream continues after the restart', 30_000, async () => echoed.split('\n').length > lines + 5);
			assert.equal(stream.exitCode, null, 'the long-lived allowed connection survived');
		} finally {
			probing = false;
			await denier;
			stream.kill('SIGKILL');
		}
		if (leaks.length) {
			const dp = await Datapath.open({ pinRoot: lab.pinRoot });
			const state = JSON.stringify({ endpoints: dp.endpointEntries(), ipcache: dp.ipcacheEntries(), policy: dp.policyEntryCount() });
			dp.close();
			const flows = await lab.flows('pod=apache&limit=6');
			const ct = (await Datapath.open({ pinRoot: lab.pinRoot }))
				.conntrack()
				.filter((c) => c.key.saddr === lab.pod('apache').ip)
				.slice(0, 4);
			assert.fail(
				`flows: ${JSON.stringify(flows.map((f) => [f.time, f.summary, f.match, f.direction]))}\nct: ${JSON.stringify(ct, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}\n${leaks.length} denied probes succeeded (first ${leaks[0]}, last ${leaks.at(-1)}); maps: ${state}\nagent log:\n${lab.agentLog(4000)}`,
			);
		}
		const nums = echoed.split('\n').filter(Boolean).map(Number);
		nums.forEach((n, i) => assert.equal(n, i, 'stream data arrived complete and in order'));
		// The restarted agent applies new changes.
		await lab.deletePolicy();
		await until('change applied by the new agent', 30_000, () => probe('apache', 'redis'));
	});

	test('API server gone for 60 s: the last state stays enforced, changes apply once it is back', async () => {
		await lab.applyPolicy();
		await until('policy enforced', 30_000, async () => !(await probe('apache', 'redis', REDIS, 300)));
		await lab.cluster!.stopComponent('kube-apiserver');
		const t0 = Date.now();
		try {
			while (Date.now() - t0 < 60_000) {
				assert.ok(await probe('app', 'redis'), 'allowed flow keeps working while the API is gone');
				assert.ok(!(await probe('apache', 'redis', REDIS, 300)), 'denied flow stays denied while the API is gone');
				await new Promise((r) => setTimeout(r, 2000));
			}
			const ready = await fetch(`${lab.observer}/readyz`);
			assert.equal(ready.status, 200, 'the agent stays ready on its last state');
		} finally {
			await lab.cluster!.startComponent('kube-apiserver');
		}
		const t1 = Date.now();
		await lab.deletePolicy();
		const took = await until('change after the API returned', 60_000, () => probe('apache', 'redis'));
		process.stdout.write(`# change applied ${Date.now() - t1} ms after the API server came back (${took} ms after delete)\n`);
		assert.match(lab.agentLog(Infinity), /watch failed; keeping the last state and retrying/);
	});
});
