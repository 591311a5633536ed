// Transparent capture for real: lab pod namespaces on a lab node namespace, the pod
// programs attached, the capture rule and table installed through the addon, and a
// real Node process as the ztunnel, listening on an IP_TRANSPARENT socket the addon
// made (test/helpers/ztunnel-lab.ts). A meshed pod's connections to meshed pods (their
// ipcache entries flagged meshed) land in it with their original destination; its
// connections to a pod that is not meshed and to a host outside the cluster go direct;
// the ztunnel's own marked connections are not captured again; non-meshed pods and
// UDP are untouched; with the ztunnel gone, connects to meshed pods fail closed and
// are counted while the others still work; a restarted ztunnel takes over; its
// transparent connect delivers with a foreign source address.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { Datapath } from '../../src/kernel/datapath.js';
import { CtFlags, Dir, EndpointFlags, Identity, IpcacheFlags } from '../../src/kernel/layout.js';
import { IPPROTO } from '../../src/kernel/codecs.js';
import { DEFAULT_CAPTURE_ROUTING, captureRoutingInstalled, installCaptureRouting, removeCaptureRouting } from '../../src/kernel/capture.js';
import { Netlink } from '../../src/kernel/netlink.js';
import { TestDatapath, allowRule, requireRoot } from '../helpers/bpf.js';
import { NODE_IP, Pod, Topology } from '../../hack/lab/topology.js';
import { repoRoot } from '../../src/shared/package.js';
import { Ztunnel } from '../helpers/ztunnel-process.js';

const run = promisify(execFile);
const lab = resolve(repoRoot, 'dist/test/helpers/ztunnel-lab.js');
/** A host outside the cluster: no Weir program on its link, no ipcache entry (world). */
const OUTSIDE_IP = '198.19.0.10';
const identityOf = (i: number): number => Identity.FirstPod + 300 + i;
const epOf = (i: number): number => 300 + i;

interface ClientResult {
	ok: boolean;
	/** the first 512 characters received */
	data: string;
	bytes: number;
	error?: string;
	local?: string;
}

async function client(pod: Pod, ip: string, port: number, payload: string, timeoutMs = 2000, repeat = 1): Promise<ClientResult> {
	const { stdout } = await run(
		'ip',
		['netns', 'exec', pod.netns, process.execPath, lab, 'client', ip, String(port), payload, String(timeoutMs), String(repeat)],
		{
			maxBuffer: 16 << 20,
		},
	);
	return JSON.parse(stdout.trim()) as ClientResult;
}

async function whoami(pod: Pod, port: number, children: Set<ChildProcess>): Promise<void> {
	const child = spawn('ip', ['netns', 'exec', pod.netns, process.execPath, lab, 'whoami', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
	children.add(child);
	child.on('exit', () => children.delete(child));
	await new Promise<void>((res, rej) => {
		const timer = setTimeout(() => rej(new Error(`whoami in ${pod.name} did not start`)), 10_000);
		child.stdout!.once('data', () => {
			clearTimeout(timer);
			res();
		});
	});
}

/** A long-lived connection from a pod (probe.js stream: a line every 100 ms, each echo printed). */
function stream(
	pod: Pod,
	ip: string,
	port: number,
	children: Set<ChildProcess>,
): { out: () => string; lines: () => number; exited: () => boolean; stop: () => void } {
	const child = spawn('ip', ['netns', 'exec', pod.netns, process.execPath, resolve(repoRoot, 'dist/hack/lab/probe.js'), 'stream', ip, String(port)], {
		stdio: ['ignore', 'pipe', 'inherit'],
	});
	children.add(child);
	child.on('exit', () => children.delete(child));
	let out = '';
	child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
	return {
		out: () => out,
		lines: () => out.split('\n').length - 1,
		exited: () => child.exitCode !== null || child.signalCode !== null,
		stop: () => child.kill('SIGKILL'),
	};
}

async function waitFor(pred: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	while (!pred()) {
		if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
		await new Promise((r) => setTimeout(r, 50));
	}
}

function proxyUnavailable(dp: Datapath): bigint {
	return dp
		.readMetrics()
		.samples.filter((s) => s.reasonName === 'PROXY_UNAVAILABLE' && s.direction === 'egress')
		.reduce((a, s) => a + s.packets, 0n);
}

describe('transparent capture into a ztunnel process', () => {
	const children = new Set<ChildProcess>();
	let topo: Topology;
	let t: TestDatapath;
	let dp: Datapath;
	let zt: Ztunnel | undefined;
	let meshed: Pod, server: Pod, plain: Pod, outside: Pod;
	let nodeNs: string;

	before(async () => {
		requireRoot();
		topo = Topology.create(3, 202);
		[meshed, server, plain] = topo.pods as [Pod, Pod, Pod];
		nodeNs = `/run/netns/${topo.nodeNs}`;
		t = await TestDatapath.open('capture');
		dp = t.dp;
		topo.pods.forEach((p, i) => {
			// The client and the server are meshed, as endpoints and as destinations; `plain` is not.
			const isMeshed = p !== plain;
			dp.setEndpoint(p.ip, { epId: epOf(i), identity: identityOf(i), ifindex: p.hostIfindex, flags: isMeshed ? EndpointFlags.Meshed : 0 });
			dp.setIpcache(`${p.ip}/32`, identityOf(i), isMeshed ? IpcacheFlags.Meshed : 0);
		});
		dp.setIpcache(`${NODE_IP}/32`, Identity.Host);
		for (const p of topo.pods) dp.attach(p.hostIfindex, { netns: nodeNs });
		// Wired like a pod, but nothing of Weir's on its link: the node's uplink side.
		outside = topo.addPod('outside', OUTSIDE_IP);
		assert.equal(await installCaptureRouting(nodeNs), true);
		await whoami(server, 8080, children);
		await whoami(plain, 8080, children);
		await whoami(outside, 8080, children);
		await topo.serve(server, 9053);
		zt = await Ztunnel.start(topo.nodeNs, children);
	});
	after(async () => {
		try {
			for (const c of children) c.kill('SIGKILL');
			await zt?.kill();
			if (nodeNs) await removeCaptureRouting(nodeNs);
		} finally {
			try {
				t?.destroy();
			} finally {
				topo?.destroy();
			}
		}
	});

	test('the capture rule and its local table are in the node namespace, once', async () => {
		assert.equal(await captureRoutingInstalled(nodeNs), true);
		assert.equal(await installCaptureRouting(nodeNs), false, 'installing again changes nothing');
		const rules = (await Netlink.in(nodeNs).rules()).filter((r) => r.table === DEFAULT_CAPTURE_ROUTING.table);
		assert.deepEqual(rules, [{ priority: 90, fwmark: 0x0e00, fwmask: 0x0f00, table: 2050, action: 'lookup' }]);
		assert.equal(await captureRoutingInstalled(), false, "this process's own namespace is untouched");
	});

	test("a meshed pod's connection to a pod lands in the ztunnel with its original destination, and is relayed end to end without a loop", async () => {
		const r = await client(meshed, server.ip, 8080, 'marker-pod');
		assert.equal(r.ok, true, JSON.stringify(r));
		const port = Number(r.local!.split(':')[1]);
		const cap = await zt!.wait((e) => e.event === 'captured' && e.src?.port === port);
		assert.deepEqual(cap.dst, { address: server.ip, port: 8080 }, 'localAddress is the original destination');
		assert.equal(cap.src?.address, meshed.ip, 'remoteAddress is the pod');
		const up = await zt!.wait((e) => e.event === 'upstream' && e.dst?.port === 8080);
		assert.equal(up.local?.address, NODE_IP, 'the ztunnel connected from the node');
		// The server answered the ztunnel's own connection (from the node), and the bytes came back through it.
		assert.match(r.data, new RegExp(`^peer ${NODE_IP.replace(/\./g, '\\.')}:\\d+\nmarker-pod$`));
		// No loop: the ztunnel's marked connection to the server was not captured again.
		const captured = zt!.events.filter((e) => e.event === 'captured');
		assert.equal(captured.filter((e) => e.dst?.port === 8080).length, 1, JSON.stringify(captured));
		assert.ok(!captured.some((e) => e.src?.address === NODE_IP), 'nothing from the ztunnel itself was captured');
		// Both connections are the ztunnel's in conntrack: the captured one and the one it opened to the server.
		const ct = dp.conntrack();
		const mine = ct.find((c) => c.key.saddr === meshed.ip && c.key.sport === port && c.key.scope === Dir.Egress);
		assert.ok(mine && mine.entry.flags & CtFlags.Proxy, 'the captured connection is marked as the ztunnel’s');
		assert.ok(
			ct.some(
				(c) =>
					c.key.saddr === NODE_IP &&
					c.key.sport === up.local?.port &&
					c.key.daddr === server.ip &&
					c.key.scope === Dir.Ingress &&
					c.entry.flags & CtFlags.Proxy,
			),
			'the ztunnel’s connection to the server is known by its mark',
		);
	});

	test("a meshed pod's connections to a pod that is not meshed and to a host outside the cluster are not captured: they arrive from the pod's address", async () => {
		const before = zt!.events.filter((e) => e.event === 'captured').length;
		for (const [dst, what] of [
			[plain, 'a pod that is not meshed'],
			[outside, 'a host outside the cluster'],
		] as const) {
			const r = await client(meshed, dst.ip, 8080, `marker-${dst.name}`);
			assert.equal(r.ok, true, `${what}: ${JSON.stringify(r)}`);
			assert.match(r.data, new RegExp(`^peer ${meshed.ip.replace(/\./g, '\\.')}:\\d+\nmarker-${dst.name}$`), `${what} sees the pod itself`);
			const port = Number(r.local!.split(':')[1]);
			const ct = dp.conntrack().find((c) => c.key.saddr === meshed.ip && c.key.sport === port && c.key.scope === Dir.Egress);
			assert.ok(ct, `${what}: policed into conntrack`);
			assert.equal(ct.entry.flags & CtFlags.Proxy, 0, `${what}: not the ztunnel's`);
		}
		await new Promise((r2) => setTimeout(r2, 100));
		assert.equal(zt!.events.filter((e) => e.event === 'captured').length, before, 'nothing captured');
	});

	test('the return path of a captured connection carries many segments both ways (established-socket lookup)', async () => {
		// 2 MB through the ztunnel's accepted socket and back: every segment from the pod
		// after the SYN is steered to that socket by its own tuple.
		// Port 81 is no proxy port of the lab ztunnel: it answers the connection itself.
		const r = await client(meshed, server.ip, 81, 'abcdefghij', 10_000, 200_000);
		assert.equal(r.ok, true, r.error);
		const head = `captured ${server.ip}:81 from ${meshed.ip}\n`;
		assert.ok(r.data.startsWith(head), r.data);
		assert.equal(r.bytes, head.length + 2_000_000);
	});

	test("a pod that is not meshed is untouched, and a meshed pod's UDP is not captured", async () => {
		const before = zt!.events.filter((e) => e.event === 'captured').length;
		const r = await client(plain, server.ip, 8080, 'marker-plain');
		assert.equal(r.ok, true, JSON.stringify(r));
		assert.match(r.data, new RegExp(`^peer ${plain.ip.replace(/\./g, '\\.')}:`), 'the server sees the plain pod itself');
		assert.ok(topo.probe(meshed, 'udp', server.ip, 9053), 'UDP from a meshed pod goes straight to the server');
		assert.ok(!topo.probe(meshed, 'udp', server.ip, 9054), 'and UDP to a port nobody has stays unanswered (the ztunnel would answer TCP)');
		await new Promise((r2) => setTimeout(r2, 100));
		assert.equal(zt!.events.filter((e) => e.event === 'captured').length, before);
	});

	test('policy comes first: what the egress policy denies is dropped as such, never captured', async () => {
		const mi = topo.pods.indexOf(meshed);
		dp.setEndpoint(meshed.ip, {
			epId: epOf(mi),
			identity: identityOf(mi),
			ifindex: meshed.hostIfindex,
			flags: EndpointFlags.Meshed | EndpointFlags.EgressIsolated,
		});
		try {
			allowRule(dp, { epId: epOf(mi), identity: identityOf(1), direction: Dir.Egress, protocol: IPPROTO.TCP, port: 8080, ruleId: 41 });
			await t.drain();
			assert.equal((await client(meshed, server.ip, 8080, 'allowed')).ok, true);
			// Port 81 of the meshed server: the ztunnel would answer it, were it allowed.
			const to81 = (): number => zt!.events.filter((e) => e.event === 'captured' && e.dst?.address === server.ip && e.dst.port === 81).length;
			const before = to81();
			const denied = await client(meshed, server.ip, 81, 'denied', 1000);
			assert.equal(denied.ok, false);
			const drop = await t.waitEvent((e) => e.type === 'drop' && e.src === meshed.ip && e.dst === server.ip && e.dport === 81);
			assert.equal(drop.reasonName, 'POLICY_DENIED');
			assert.equal(to81(), before, 'never captured');
		} finally {
			dp.setEndpoint(meshed.ip, { epId: epOf(mi), identity: identityOf(mi), ifindex: meshed.hostIfindex, flags: EndpointFlags.Meshed });
		}
	});

	/**
	 * Switches the capture of the meshed pod's connections to the server off, on and off
	 * again with `set`, opening a stream in each state: every new connection follows the
	 * switch, every open one keeps its path until it closes.
	 */
	async function onlyNewConnectionsFollow(set: (on: boolean) => void, what: string): Promise<void> {
		const peerOf = (out: string): string | undefined => /^peer (\S+):\d+$/m.exec(out)?.[1];
		const viaZtunnel = NODE_IP;
		try {
			set(false);
			const direct = stream(meshed, server.ip, 8080, children);
			await waitFor(() => direct.lines() > 3, 'the direct stream runs');
			assert.equal(peerOf(direct.out()), meshed.ip, `opened while not ${what}: direct`);
			set(true);
			assert.match((await client(meshed, server.ip, 8080, 'now-meshed')).data, new RegExp(`^peer ${viaZtunnel}:`), 'a new connection is captured');
			const n = direct.lines();
			await waitFor(() => direct.lines() > n + 3, 'the direct stream goes on, still direct');
			const captured = stream(meshed, server.ip, 8080, children);
			await waitFor(() => captured.lines() > 3, 'the captured stream runs');
			assert.equal(peerOf(captured.out()), viaZtunnel, `opened while ${what}: through the ztunnel`);
			set(false);
			assert.match((await client(meshed, server.ip, 8080, 'unmeshed')).data, new RegExp(`^peer ${meshed.ip}:`), 'a new connection goes direct');
			const m = captured.lines();
			await waitFor(() => captured.lines() > m + 3, 'the captured stream goes on through the ztunnel');
			assert.equal(direct.exited(), false);
			assert.equal(captured.exited(), false);
			direct.stop();
			captured.stop();
		} finally {
			set(true);
		}
	}

	test('meshing a pod, or no longer, changes its new connections; the open ones keep their path until they close', async () => {
		const mi = topo.pods.indexOf(meshed);
		await onlyNewConnectionsFollow(
			(on) => dp.setEndpoint(meshed.ip, { epId: epOf(mi), identity: identityOf(mi), ifindex: meshed.hostIfindex, flags: on ? EndpointFlags.Meshed : 0 }),
			'meshed',
		);
	});

	test("flagging a destination's ipcache entry meshed, or no longer, changes only new connections to it; the open ones keep their path", async () => {
		const si = topo.pods.indexOf(server);
		await onlyNewConnectionsFollow((on) => dp.setIpcache(`${server.ip}/32`, identityOf(si), on ? IpcacheFlags.Meshed : 0), 'flagged meshed');
	});

	test("the ztunnel's transparent connect reaches a pod with a foreign source address, which the pod sees as its peer", async () => {
		const toMeshed = await zt!.deliver(plain.ip, server.ip, 8080);
		assert.equal(toMeshed.event, 'delivered', JSON.stringify(toMeshed));
		assert.match(toMeshed.line!, new RegExp(`^peer ${plain.ip.replace(/\./g, '\\.')}:\\d+$`));
		const toPlain = await zt!.deliver(meshed.ip, plain.ip, 8080);
		assert.equal(toPlain.event, 'delivered', JSON.stringify(toPlain));
		assert.match(toPlain.line!, new RegExp(`^peer ${meshed.ip.replace(/\./g, '\\.')}:\\d+$`));
		const refused = await zt!.deliver(meshed.ip, plain.ip, 8081);
		assert.deepEqual([refused.event, refused.code, refused.op], ['failed', 'ECONNREFUSED', 'connect']);
	});

	test("with the ztunnel killed, a meshed pod's new connects to meshed pods fail closed and are counted, its others still connect; a restarted ztunnel recovers", async () => {
		await zt!.kill();
		await t.drain();
		const counted = proxyUnavailable(dp);
		const r = await client(meshed, server.ip, 8080, 'no-bypass', 1500);
		assert.equal(r.ok, false, `no bypass to the server: ${JSON.stringify(r)}`);
		const drop = await t.waitEvent((e) => e.type === 'drop' && e.reasonName === 'PROXY_UNAVAILABLE' && e.src === meshed.ip);
		assert.equal(drop.direction, 'egress');
		assert.equal(drop.dst, server.ip);
		assert.equal(drop.dport, 8080);
		assert.equal(drop.epId, epOf(0));
		assert.equal(drop.verdict, 'DROPPED');
		assert.ok(proxyUnavailable(dp) > counted, 'counted under PROXY_UNAVAILABLE');
		// What is not meshed never needed the ztunnel: reached directly, from the pod's address.
		for (const dst of [plain, outside]) {
			const direct = await client(meshed, dst.ip, 8080, `direct-${dst.name}`);
			assert.equal(direct.ok, true, `${dst.name}: ${JSON.stringify(direct)}`);
			assert.match(direct.data, new RegExp(`^peer ${meshed.ip.replace(/\./g, '\\.')}:`));
		}
		assert.ok(!t.events.some((e) => e.reasonName === 'PROXY_UNAVAILABLE' && e.dst !== server.ip), 'only the meshed destination failed closed');
		// Other pods are unaffected.
		assert.equal((await client(plain, server.ip, 8080, 'still-plain')).ok, true);

		zt = await Ztunnel.start(topo.nodeNs, children);
		const back = await client(meshed, server.ip, 8080, 'recovered');
		assert.equal(back.ok, true, JSON.stringify(back));
		assert.match(back.data, /recovered$/);
	});
});
