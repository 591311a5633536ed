// Real traffic between pod namespaces through the pod programs attached by the addon,
// with events read from the ring buffer; then the agent process goes away and the
// pinned datapath keeps enforcing, and a new process takes over without a gap.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Datapath, removePinRoot } from '../../src/kernel/datapath.js';
import { IPPROTO } from '../../src/kernel/codecs.js';
import { Dir, EndpointFlags, Identity } from '../../src/kernel/layout.js';
import { native } from '../../src/kernel/addon.js';
import { TestDatapath, allowRule, ensureBpffs, requireRoot, testPinRoot } from '../helpers/bpf.js';
import { NODE_IP, Pod, Topology } from '../../hack/lab/topology.js';
import { repoRoot } from '../../src/shared/package.js';

const identityOf = (i: number): number => Identity.FirstPod + 100 + i;
const epOf = (i: number): number => 100 + i;

describe('pod programs on real veths', () => {
	let topo: Topology;
	let t: TestDatapath;
	let dp: Datapath;
	let client: Pod, server: Pod, other: Pod;

	before(async () => {
		requireRoot();
		topo = Topology.create(3);
		[client, server, other] = topo.pods as [Pod, Pod, Pod];
		t = await TestDatapath.open('traffic');
		dp = t.dp;
		topo.pods.forEach((p, i) => {
			dp.setEndpoint(p.ip, { epId: epOf(i), identity: identityOf(i), ifindex: p.hostIfindex, flags: 0 });
			dp.setIpcache(`${p.ip}/32`, identityOf(i));
		});
		dp.setIpcache(`${NODE_IP}/32`, Identity.Host);
		for (const p of topo.pods) dp.attach(p.hostIfindex, { netns: `/run/netns/${topo.nodeNs}` });
		await topo.serve(server, 8080);
		await topo.serve(server, 9090);
		await topo.serve(client, 8080);
	});
	after(() => {
		try {
			t?.destroy();
		} finally {
			topo?.destroy();
		}
	});

	test('the programs are attached as tcx links on both hooks of every pod veth', () => {
		for (const p of topo.pods) {
			for (const dir of ['ingress', 'egress'] as const) {
				assert.equal(native().tcxQuery(p.hostIfindex, dir, `/run/netns/${topo.nodeNs}`).length, 1, `${p.name} ${dir}`);
			}
		}
	});

	test('with no policy, TCP, UDP and ICMP flow between all pods', () => {
		assert.ok(topo.probe(client, 'tcp', server.ip, 8080));
		assert.ok(topo.probe(other, 'udp', server.ip, 8080));
		assert.ok(topo.ping(other, server.ip));
		assert.ok(topo.probe(server, 'tcp', client.ip, 8080));
	});

	test('ingress policy admits what its entries allow and drops the rest, with events', async () => {
		const si = topo.pods.indexOf(server);
		dp.setEndpoint(server.ip, { epId: epOf(si), identity: identityOf(si), ifindex: server.hostIfindex, flags: EndpointFlags.IngressIsolated });
		allowRule(dp, { epId: epOf(si), identity: identityOf(0), direction: Dir.Ingress, ruleId: 21 });
		allowRule(dp, { epId: epOf(si), identity: identityOf(2), direction: Dir.Ingress, protocol: IPPROTO.TCP, port: 9090, ruleId: 22 });
		await t.drain();

		assert.ok(topo.probe(client, 'tcp', server.ip, 8080), 'client tcp');
		assert.ok(topo.probe(client, 'udp', server.ip, 8080), 'client udp');
		assert.ok(topo.ping(client, server.ip), 'client icmp');
		assert.ok(topo.probe(other, 'tcp', server.ip, 9090), 'other tcp 9090');
		assert.ok(!topo.probe(other, 'tcp', server.ip, 8080), 'other tcp 8080 denied');
		assert.ok(!topo.probe(other, 'udp', server.ip, 8080), 'other udp denied');
		assert.ok(!topo.ping(other, server.ip), 'other icmp denied');

		const allowed = await t.waitEvent((e) => e.type === 'policy-verdict' && e.direction === 'ingress' && e.src === other.ip && e.dport === 9090);
		assert.equal(allowed.ruleId, 22);
		assert.equal(allowed.epId, epOf(si));
		assert.equal(allowed.direction, 'ingress');
		assert.equal(allowed.ifindex, server.hostIfindex);
		const viaAll = await t.waitEvent((e) => e.type === 'policy-verdict' && e.direction === 'ingress' && e.src === client.ip && e.protocol === IPPROTO.ICMP);
		assert.equal(viaAll.ruleId, 21);
		for (const proto of [IPPROTO.TCP, IPPROTO.UDP, IPPROTO.ICMP]) {
			const drop = await t.waitEvent((e) => e.type === 'drop' && e.src === other.ip && e.protocol === proto);
			assert.equal(drop.reasonName, 'POLICY_DENIED');
			assert.equal(drop.verdict, 'DROPPED');
			assert.equal(drop.epId, epOf(si));
			assert.equal(drop.srcIdentity, identityOf(2));
			assert.equal(drop.dstIdentity, identityOf(si));
			assert.equal(drop.dst, server.ip);
			assert.equal(drop.direction, 'ingress');
			if (proto === IPPROTO.TCP) assert.equal(drop.dport, 8080);
		}
	});

	test('egress policy limits what a pod may open; replies to it still arrive', async () => {
		const oi = topo.pods.indexOf(other);
		dp.setEndpoint(other.ip, {
			epId: epOf(oi),
			identity: identityOf(oi),
			ifindex: other.hostIfindex,
			flags: EndpointFlags.EgressIsolated | EndpointFlags.IngressIsolated,
		});
		allowRule(dp, { epId: epOf(oi), identity: identityOf(1), direction: Dir.Egress, protocol: IPPROTO.TCP, port: 9090, ruleId: 23 });
		await t.drain();
		assert.ok(topo.probe(other, 'tcp', server.ip, 9090), 'allowed egress, and the echo comes back into an ingress-isolated pod');
		assert.ok(!topo.probe(other, 'tcp', client.ip, 8080), 'egress to client denied');
		const drop = await t.waitEvent((e) => e.type === 'drop' && e.src === other.ip && e.dst === client.ip);
		assert.equal(drop.direction, 'egress');
		assert.equal(drop.epId, epOf(oi));
		assert.equal(drop.dstIdentity, identityOf(0));
	});

	test('counters reflect the drops', () => {
		const m = dp.readMetrics();
		const denied = m.samples.filter((s) => s.reasonName === 'POLICY_DENIED').reduce((a, s) => a + s.packets, 0n);
		const ok = m.samples.filter((s) => s.reasonName === 'OK').reduce((a, s) => a + s.packets, 0n);
		assert.ok(denied >= 4n, `denied ${denied}`);
		assert.ok(ok > 10n, `forwarded ${ok}`);
		assert.equal(m.eventsLost, 0n);
	});
});

describe('the pinned datapath outlives the agent', () => {
	const child = resolve(repoRoot, 'dist/test/helpers/agent-child.js');
	let topo: Topology;
	let pinRoot: string;

	before(() => {
		requireRoot();
		ensureBpffs();
		topo = Topology.create(3, 201);
		pinRoot = testPinRoot('restart');
	});
	after(async () => {
		try {
			// Uninstall what the agents left behind: links and maps.
			if (existsSync(pinRoot)) (await Datapath.open({ pinRoot })).destroy();
		} finally {
			removePinRoot(pinRoot);
			topo?.destroy();
		}
	});

	test('enforcement continues with no process, and a new process takes over without a gap', async () => {
		const [a, b, c] = topo.pods as [Pod, Pod, Pod];
		const netns = `/run/netns/${topo.nodeNs}`;
		const ids = topo.pods.map((_, i) => identityOf(i));
		const first = spawnAgentSync(child, {
			pinRoot,
			netns,
			endpoints: topo.pods.map((p, i) => ({
				ip: p.ip,
				epId: epOf(i),
				identity: ids[i]!,
				ifindex: p.hostIfindex,
				flags: i === 1 ? EndpointFlags.IngressIsolated : 0,
			})),
			ipcache: topo.pods.map((p, i) => ({ cidr: `${p.ip}/32`, identity: ids[i]! })),
			allow: [{ epId: epOf(1), identity: ids[0]!, direction: Dir.Ingress, protocol: IPPROTO.TCP, port: 7000, ruleId: 31 }],
			attach: topo.pods.map((p) => p.hostIfindex),
		});
		// The first agent has exited: its pid is gone.
		assert.throws(() => process.kill(first.pid, 0));

		await topo.serve(b, 7000);
		assert.ok(topo.probe(a, 'tcp', b.ip, 7000), 'allowed flow works with no agent');
		assert.ok(!topo.probe(c, 'tcp', b.ip, 7000), 'denied flow stays denied with no agent');

		// A long-lived allowed connection streams across the takeover.
		const stream = spawn('ip', ['netns', 'exec', a.netns, process.execPath, resolve(repoRoot, 'dist/hack/lab/probe.js'), 'stream', b.ip, '7000'], {
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		let echoed = '';
		stream.stdout.on('data', (d: Buffer) => (echoed += d.toString()));
		try {
			await waitFor(() => echoed.split('\n').length > 5, 5000, 'stream started');
			const deniedDuring: boolean[] = [];
			const second = spawnAgentSync(child, { pinRoot, netns, attach: topo.pods.map((p) => p.hostIfindex) });
			deniedDuring.push(topo.probe(c, 'tcp', b.ip, 7000));
			const linesBefore = echoed.split('\n').length;
			await waitFor(() => echoed.split('\n').length > linesBefore + 5, 5000, 'stream continues after takeover');
			assert.equal(stream.exitCode, null, 'stream connection survived');
			assert.deepEqual(deniedDuring, [false], 'no denied probe succeeded during takeover');
			// The new process swapped the programs on the same links.
			for (const p of topo.pods) {
				const before = first.progIds[p.hostIfindex]!;
				const now = second.progIds[p.hostIfindex]!;
				assert.equal(now.ingress.length, 1);
				assert.notDeepEqual(now.ingress, before.ingress, `${p.name}: new program on the ingress link`);
			}
			// Maps were reused: the old allow entry still works after takeover.
			assert.ok(topo.probe(a, 'tcp', b.ip, 7000));
			assert.ok(!topo.probe(c, 'tcp', b.ip, 7000));
			// The stream's numbers arrived in order with none lost.
			const nums = echoed.split('\n').filter(Boolean).map(Number);
			nums.forEach((n, i) => assert.equal(n, i));
		} finally {
			stream.kill('SIGKILL');
		}
	});
});

interface ChildOut {
	pid: number;
	progIds: Record<number, { ingress: number[]; egress: number[] }>;
}

function spawnAgentSync(script: string, spec: object): ChildOut {
	const out = execFileSync(process.execPath, [script, JSON.stringify(spec)], { encoding: 'utf8' });
	return JSON.parse(out.trim().split('\n').pop()!) as ChildOut;
}

async function waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	while (!pred()) {
		if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
		await new Promise((r) => setTimeout(r, 50));
	}
}
