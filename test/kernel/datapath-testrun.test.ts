// The pod programs in the real kernel under BPF_PROG_TEST_RUN: build a packet, seed
// the maps, run, check the verdict and the event the program emitted; and the event
// stream's failure path.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEFAULT_CONFIG, Datapath, removePinRoot } from '../../src/kernel/datapath.js';
import { DatapathEvent, IPPROTO } from '../../src/kernel/codecs.js';
import { CtFlags, Dir, DropReason, EndpointFlags, Identity, IpcacheFlags, MtlsPortMode } from '../../src/kernel/layout.js';
import { repoRoot } from '../../src/shared/package.js';
import { TestDatapath, allowRule, ensureBpffs, requireRoot, testPinRoot } from '../helpers/bpf.js';
import { PacketSpec, TCP_FLAGS, frame, reverse, skbCtx } from '../helpers/packets.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const LO = 1; // test-run's device: endpoints are registered on ifindex 1

const A = { ip: '10.1.0.1', ep: 11, id: 1001 };
const B = { ip: '10.1.0.2', ep: 12, id: 1002 };
const C = { ip: '10.1.0.3', ep: 13, id: 1003 };
const NODE_IP = '10.1.255.1';
const CIDR_ID = Identity.FirstCidr + 1;
const CIDR_INNER_ID = Identity.FirstCidr + 2;

let sport = 30000;
const nextPort = (): number => sport++;

function run(dp: Datapath, prog: 'weir_from_pod' | 'weir_to_pod', spec: PacketSpec | Buffer): number {
	const data = Buffer.isBuffer(spec) ? spec : frame(spec);
	return dp.program(prog).testRun({ data, ctx: skbCtx(LO), repeat: 1 }).retval;
}

/** Runs the packet through the sender's egress hook and the receiver's ingress hook. */
function send(dp: Datapath, spec: PacketSpec): { egress: number; ingress: number } {
	const egress = run(dp, 'weir_from_pod', spec);
	const ingress = egress === TC_ACT_OK ? run(dp, 'weir_to_pod', spec) : -1;
	return { egress, ingress };
}

function tcp(src: string, dst: string, dport: number, flags: number = TCP_FLAGS.SYN, sp = nextPort()): PacketSpec {
	return { src, dst, protocol: 'tcp', sport: sp, dport, tcpFlags: flags };
}

function badIhl(f: Buffer): Buffer {
	f.writeUInt8(0x44, 14); // version 4, IHL 4 words
	return f;
}

describe('pod programs under BPF_PROG_TEST_RUN', () => {
	let t: TestDatapath;
	let dp: Datapath;

	before(async () => {
		t = await TestDatapath.open('testrun');
		dp = t.dp;
		for (const p of [A, B, C]) {
			dp.setEndpoint(p.ip, { epId: p.ep, identity: p.id, ifindex: LO, flags: 0 });
			dp.setIpcache(`${p.ip}/32`, p.id);
		}
		dp.setIpcache(`${NODE_IP}/32`, Identity.Host);
		dp.setIpcache('203.0.113.0/24', CIDR_ID);
		dp.setIpcache('203.0.113.128/25', CIDR_INNER_ID);
	});
	after(() => t?.destroy());

	const isolate = (p: typeof A, flags: number): void => dp.setEndpoint(p.ip, { epId: p.ep, identity: p.id, ifindex: LO, flags });

	const expectVerdict = async (pred: (e: DatapathEvent) => boolean): Promise<DatapathEvent> => t.waitEvent(pred);

	test('a pod that no policy isolates sends and receives anything, with a verdict event', async () => {
		const spec = tcp(A.ip, B.ip, 80);
		assert.deepEqual(send(dp, spec), { egress: TC_ACT_OK, ingress: TC_ACT_OK });
		const ev = await expectVerdict((e) => e.sport === spec.sport && e.direction === 'egress');
		assert.equal(ev.type, 'policy-verdict');
		assert.equal(ev.verdict, 'FORWARDED');
		assert.equal(ev.match, 'not-isolated');
		assert.equal(ev.src, A.ip);
		assert.equal(ev.dst, B.ip);
		assert.equal(ev.srcIdentity, A.id);
		assert.equal(ev.dstIdentity, B.id);
		assert.equal(ev.epId, A.ep);
		assert.equal(ev.protocol, IPPROTO.TCP);
		assert.equal(ev.dport, 80);
		assert.equal(ev.tcpFlags, TCP_FLAGS.SYN);
	});

	test('an ingress-isolated pod drops what no entry allows, naming reason and endpoints', async () => {
		isolate(B, EndpointFlags.IngressIsolated);
		const spec = tcp(A.ip, B.ip, 80);
		assert.equal(run(dp, 'weir_to_pod', spec), TC_ACT_SHOT);
		const ev = await expectVerdict((e) => e.sport === spec.sport && e.type === 'drop');
		assert.equal(ev.verdict, 'DROPPED');
		assert.equal(ev.reason, DropReason.POLICY_DENIED);
		assert.equal(ev.reasonName, 'POLICY_DENIED');
		assert.equal(ev.direction, 'ingress');
		assert.equal(ev.epId, B.ep);
		assert.equal(ev.srcIdentity, A.id);
		assert.equal(ev.dstIdentity, B.id);
		assert.equal(ev.ruleId, 0);
		assert.equal(ev.match, 'none');
	});

	test('an entry for (peer identity, TCP port) allows that port only and names its rule', async () => {
		isolate(B, EndpointFlags.IngressIsolated);
		allowRule(dp, { epId: B.ep, identity: A.id, direction: Dir.Ingress, protocol: IPPROTO.TCP, port: 80, ruleId: 7 });
		const ok = tcp(A.ip, B.ip, 80);
		assert.equal(run(dp, 'weir_to_pod', ok), TC_ACT_OK);
		const ev = await expectVerdict((e) => e.sport === ok.sport);
		assert.equal(ev.verdict, 'FORWARDED');
		assert.equal(ev.ruleId, 7);
		assert.equal(ev.match, 'l3-l4');
		assert.equal(run(dp, 'weir_to_pod', tcp(A.ip, B.ip, 81)), TC_ACT_SHOT, 'other port');
		assert.equal(run(dp, 'weir_to_pod', tcp(C.ip, B.ip, 80)), TC_ACT_SHOT, 'other peer');
		assert.equal(run(dp, 'weir_to_pod', { src: A.ip, dst: B.ip, protocol: 'udp', sport: nextPort(), dport: 80 }), TC_ACT_SHOT, 'other protocol');
	});

	test('a wildcard-identity entry admits any peer on its port', async () => {
		isolate(B, EndpointFlags.IngressIsolated);
		allowRule(dp, { epId: B.ep, identity: Identity.Unknown, direction: Dir.Ingress, protocol: IPPROTO.TCP, port: 443, ruleId: 8 });
		for (const src of [A.ip, C.ip, '198.51.100.7']) {
			const spec = tcp(src, B.ip, 443);
			assert.equal(run(dp, 'weir_to_pod', spec), TC_ACT_OK, src);
			const ev = await expectVerdict((e) => e.sport === spec.sport);
			assert.equal(ev.ruleId, 8);
			assert.equal(ev.match, 'l4-only');
		}
	});

	test('a wildcard-port entry admits every port of its protocol, not other protocols', async () => {
		isolate(B, EndpointFlags.IngressIsolated);
		allowRule(dp, { epId: B.ep, identity: C.id, direction: Dir.Ingress, protocol: IPPROTO.TCP, ruleId: 9 });
		for (const port of [1, 22, 65535]) assert.equal(run(dp, 'weir_to_pod', tcp(C.ip, B.ip, port)), TC_ACT_OK, `tcp ${port}`);
		assert.equal(run(dp, 'weir_to_pod', { src: C.ip, dst: B.ip, protocol: 'udp', sport: nextPort(), dport: 53 }), TC_ACT_SHOT);
	});

	test('an all-protocols entry admits UDP, SCTP and ICMP from its peer', async () => {
		isolate(A, EndpointFlags.IngressIsolated);
		allowRule(dp, { epId: A.ep, identity: B.id, direction: Dir.Ingress, ruleId: 10 });
		const udp: PacketSpec = { src: B.ip, dst: A.ip, protocol: 'udp', sport: nextPort(), dport: 5353 };
		assert.equal(run(dp, 'weir_to_pod', udp), TC_ACT_OK);
		const ev = await expectVerdict((e) => e.sport === udp.sport);
		assert.equal(ev.match, 'l3-only');
		assert.equal(ev.ruleId, 10);
		assert.equal(run(dp, 'weir_to_pod', { src: B.ip, dst: A.ip, protocol: 'sctp', sport: nextPort(), dport: 9 }), TC_ACT_OK);
		assert.equal(run(dp, 'weir_to_pod', { src: B.ip, dst: A.ip, protocol: 'icmp', icmpType: 8, id: 77 }), TC_ACT_OK);
		assert.equal(run(dp, 'weir_to_pod', { src: C.ip, dst: A.ip, protocol: 'icmp', icmpType: 8, id: 78 }), TC_ACT_SHOT);
	});

	test('a port-range entry admits exactly [port, endPort]', () => {
		isolate(C, EndpointFlags.IngressIsolated);
		allowRule(dp, { epId: C.ep, identity: A.id, direction: Dir.Ingress, protocol: IPPROTO.TCP, port: 8000, endPort: 8100, ruleId: 11 });
		for (const p of [8000, 8001, 8063, 8064, 8099, 8100]) assert.equal(run(dp, 'weir_to_pod', tcp(A.ip, C.ip, p)), TC_ACT_OK, `port ${p}`);
		for (const p of [7999, 8101, 8128, 80]) assert.equal(run(dp, 'weir_to_pod', tcp(A.ip, C.ip, p)), TC_ACT_SHOT, `port ${p}`);
	});

	test('CIDR identities follow the longest prefix; unknown addresses are world', async () => {
		isolate(A, EndpointFlags.EgressIsolated | EndpointFlags.IngressIsolated);
		allowRule(dp, { epId: A.ep, identity: CIDR_ID, direction: Dir.Egress, protocol: IPPROTO.TCP, port: 443, ruleId: 12 });
		const outer = tcp(A.ip, '203.0.113.5', 443);
		assert.equal(run(dp, 'weir_from_pod', outer), TC_ACT_OK);
		assert.equal((await expectVerdict((e) => e.sport === outer.sport)).dstIdentity, CIDR_ID);
		const inner = tcp(A.ip, '203.0.113.200', 443);
		assert.equal(run(dp, 'weir_from_pod', inner), TC_ACT_SHOT, 'the /25 inside the /24 has its own identity');
		assert.equal((await expectVerdict((e) => e.sport === inner.sport)).dstIdentity, CIDR_INNER_ID);
		const world = tcp(A.ip, '198.51.100.1', 443);
		assert.equal(run(dp, 'weir_from_pod', world), TC_ACT_SHOT);
		const ev = await expectVerdict((e) => e.sport === world.sport);
		assert.equal(ev.dstIdentity, Identity.World);
		assert.equal(ev.direction, 'egress');
		assert.equal(ev.reasonName, 'POLICY_DENIED');
	});

	test('established and reply packets pass without a policy entry and without events', async () => {
		// A is isolated both ways; only A -> C:9000 egress is allowed. C isolates nothing.
		isolate(A, EndpointFlags.EgressIsolated | EndpointFlags.IngressIsolated);
		isolate(C, 0);
		allowRule(dp, { epId: A.ep, identity: C.id, direction: Dir.Egress, protocol: IPPROTO.TCP, port: 9000, ruleId: 13 });
		const syn = tcp(A.ip, C.ip, 9000);
		assert.deepEqual(send(dp, syn), { egress: TC_ACT_OK, ingress: TC_ACT_OK });
		await t.drain();
		const synAck = reverse(syn, TCP_FLAGS.SYN | TCP_FLAGS.ACK);
		assert.equal(run(dp, 'weir_from_pod', synAck), TC_ACT_OK, 'C replies');
		assert.equal(run(dp, 'weir_to_pod', synAck), TC_ACT_OK, 'the reply reaches isolated A');
		const ack = { ...syn, tcpFlags: TCP_FLAGS.ACK };
		assert.deepEqual(send(dp, ack), { egress: TC_ACT_OK, ingress: TC_ACT_OK }, 'established');
		assert.deepEqual(await t.drain(), [], 'no events for established or reply packets');
		const ct = dp.conntrack().find((c) => c.key.sport === syn.sport && c.key.scope === Dir.Egress);
		assert.ok(ct, 'conntrack entry exists');
		assert.equal(ct.entry.ruleId, 13);
		assert.equal(ct.entry.packets, 3n, 'SYN, SYN-ACK, ACK');
		assert.ok(ct.entry.flags & 1, 'seen reply');
		// A new connection from C to A on another port is still denied.
		assert.equal(run(dp, 'weir_to_pod', tcp(C.ip, A.ip, 9000)), TC_ACT_SHOT);
	});

	test('ICMP errors about an allowed flow pass; unrelated ones do not', async () => {
		isolate(A, EndpointFlags.EgressIsolated | EndpointFlags.IngressIsolated);
		allowRule(dp, { epId: A.ep, identity: C.id, direction: Dir.Egress, protocol: IPPROTO.UDP, port: 53, ruleId: 14 });
		const q: PacketSpec = { src: A.ip, dst: C.ip, protocol: 'udp', sport: nextPort(), dport: 53 };
		assert.equal(run(dp, 'weir_from_pod', q), TC_ACT_OK);
		const unreach: PacketSpec = { src: C.ip, dst: A.ip, protocol: 'icmp', icmpType: 3, icmpCode: 3, inner: q };
		assert.equal(run(dp, 'weir_to_pod', unreach), TC_ACT_OK, 'port unreachable for the query');
		const other: PacketSpec = { ...unreach, inner: { ...q, sport: nextPort() } };
		assert.equal(run(dp, 'weir_to_pod', other), TC_ACT_SHOT, 'error about a flow never seen');
	});

	test('traffic from the node itself reaches isolated pods (kubelet probes)', async () => {
		isolate(B, EndpointFlags.IngressIsolated);
		const probe = tcp(NODE_IP, B.ip, 8081);
		assert.equal(run(dp, 'weir_to_pod', probe), TC_ACT_OK);
		const ev = await expectVerdict((e) => e.sport === probe.sport);
		assert.equal(ev.match, 'host');
		assert.equal(ev.srcIdentity, Identity.Host);
	});

	test('bad and foreign packets are dropped with their own reasons', async () => {
		const cases: Array<[string, Buffer, number]> = [
			// (test-run itself refuses frames shorter than an IPv4 header)
			['IPv4 header length below 20', badIhl(frame(tcp(A.ip, B.ip, 80))), DropReason.INVALID_PACKET],
			['truncated TCP', frame(tcp(A.ip, B.ip, 80)).subarray(0, 40), DropReason.INVALID_PACKET],
			['IPv6', frame({ src: A.ip, dst: B.ip, protocol: 'tcp', ethertype: 0x86dd }), DropReason.UNSUPPORTED_L3],
			['unknown source', frame(tcp('10.1.9.9', B.ip, 80)), DropReason.NO_ENDPOINT],
			['fragment', frame({ ...tcp(A.ip, B.ip, 80), fragOffset: 100 }), DropReason.FRAG_NOT_SUPPORTED],
		];
		for (const [name, data, reason] of cases) {
			assert.equal(run(dp, 'weir_from_pod', data), TC_ACT_SHOT, name);
			const ev = await t.waitEvent((e) => e.type === 'drop' && e.reason === reason);
			assert.equal(ev.direction, 'egress', name);
		}
		assert.equal(run(dp, 'weir_from_pod', frame({ src: A.ip, dst: B.ip, protocol: 'tcp', ethertype: 0x0806 })), TC_ACT_OK, 'ARP passes');
		// A pod on another interface sending as A: spoofed source.
		dp.setEndpoint(C.ip, { epId: C.ep, identity: C.id, ifindex: 999, flags: 0 });
		try {
			assert.equal(run(dp, 'weir_from_pod', tcp(C.ip, B.ip, 80)), TC_ACT_SHOT);
			await t.waitEvent((e) => e.reason === DropReason.INVALID_SOURCE && e.src === C.ip);
			assert.equal(run(dp, 'weir_to_pod', tcp(A.ip, C.ip, 80)), TC_ACT_SHOT);
			await t.waitEvent((e) => e.reason === DropReason.WRONG_INTERFACE && e.dst === C.ip);
		} finally {
			dp.setEndpoint(C.ip, { epId: C.ep, identity: C.id, ifindex: LO, flags: 0 });
		}
	});

	test('per-reason counters count forwarded and dropped packets by direction', () => {
		const before = dp.readMetrics().samples;
		const get = (s: typeof before, name: string, dir: string): bigint => s.find((x) => x.reasonName === name && x.direction === dir)?.packets ?? 0n;
		isolate(B, EndpointFlags.IngressIsolated);
		for (let i = 0; i < 3; i++) run(dp, 'weir_to_pod', tcp(A.ip, B.ip, 6666));
		run(dp, 'weir_from_pod', tcp(B.ip, A.ip, 6666));
		const now = dp.readMetrics().samples;
		assert.equal(get(now, 'POLICY_DENIED', 'ingress') - get(before, 'POLICY_DENIED', 'ingress'), 3n);
		assert.equal(get(now, 'OK', 'egress') - get(before, 'OK', 'egress'), 1n);
	});

	test('conntrack GC removes only expired entries', () => {
		const count = dp.conntrack().length;
		assert.ok(count > 0);
		assert.equal(dp.gcConntrack(), 0, 'nothing has expired yet');
		// Far in the future every entry has expired.
		const removed = dp.gcConntrack(process.hrtime.bigint() + 10n ** 15n);
		assert.equal(removed, count);
		assert.equal(dp.conntrack().length, 0);
	});
});

describe('load-time configuration', () => {
	test('the pod programs load through the verifier in every load-time configuration', async () => {
		requireRoot();
		ensureBpffs();
		for (const capture of [true, false])
			for (const audit of [true, false])
				for (const verdictEvents of [true, false])
					for (const allowHost of [true, false])
						for (const ztunnelMark of [DEFAULT_CONFIG.ztunnelMark, 0]) {
							const pinRoot = testPinRoot('verifier');
							try {
								const config = { capture, audit, verdictEvents, allowHost, ztunnelMark, proxyAddress: capture ? '127.0.0.1' : '0.0.0.0' };
								const dp = await Datapath.open({ pinRoot, config });
								assert.deepEqual(dp.config, { ...DEFAULT_CONFIG, ...config });
								dp.destroy();
							} finally {
								removePinRoot(pinRoot);
							}
						}
		const bad = testPinRoot('verifier');
		await assert.rejects(Datapath.open({ pinRoot: bad, config: { proxyAddress: 'nowhere' } }), /proxyAddress must be an IPv4 address/);
		assert.equal(existsSync(bad), false, 'a bad setting leaves nothing in bpffs');
	});

	test('audit mode reports a denial as AUDIT and lets the packet through', async () => {
		const t = await TestDatapath.open('audit', { audit: true });
		try {
			t.dp.setEndpoint(B.ip, { epId: B.ep, identity: B.id, ifindex: LO, flags: EndpointFlags.IngressIsolated });
			const spec = tcp(A.ip, B.ip, 80);
			assert.equal(run(t.dp, 'weir_to_pod', spec), TC_ACT_OK);
			const ev = await t.waitEvent((e) => e.sport === spec.sport);
			assert.equal(ev.verdict, 'AUDIT');
			assert.equal(ev.match, 'none');
		} finally {
			t.destroy();
		}
	});

	test('with allowHost off, the node is policed like any peer', async () => {
		const t = await TestDatapath.open('nohost', { allowHost: false });
		try {
			t.dp.setEndpoint(B.ip, { epId: B.ep, identity: B.id, ifindex: LO, flags: EndpointFlags.IngressIsolated });
			t.dp.setIpcache(`${NODE_IP}/32`, Identity.Host);
			assert.equal(run(t.dp, 'weir_to_pod', tcp(NODE_IP, B.ip, 8081)), TC_ACT_SHOT);
		} finally {
			t.destroy();
		}
	});
});

describe('capture of meshed pods (no ztunnel socket here: test runs see none)', () => {
	// No socket of the test's namespace listens on the proxy port (1, tcpmux), so every
	// packet the programs would capture fails closed. Real sockets: ztunnel-capture.test.ts.
	// A is a meshed pod, B a pod that is not; C is a meshed pod elsewhere (its ipcache
	// entry is flagged meshed, it has no endpoint here). Only TCP from A to C is captured.
	const ZT_MARK = DEFAULT_CONFIG.ztunnelMark;
	let t: TestDatapath;
	let dp: Datapath;
	const runCtx = (prog: 'weir_from_pod' | 'weir_to_pod', spec: PacketSpec, mark = 0): number =>
		dp.program(prog).testRun({ data: frame(spec), ctx: skbCtx(LO, mark), repeat: 1 }).retval;

	before(async () => {
		t = await TestDatapath.open('capture-testrun', { proxyPort: 1 });
		dp = t.dp;
		dp.setEndpoint(A.ip, { epId: A.ep, identity: A.id, ifindex: LO, flags: EndpointFlags.Meshed });
		dp.setEndpoint(B.ip, { epId: B.ep, identity: B.id, ifindex: LO, flags: 0 });
		dp.setIpcache(`${A.ip}/32`, A.id, IpcacheFlags.Meshed);
		dp.setIpcache(`${B.ip}/32`, B.id);
		dp.setIpcache(`${C.ip}/32`, C.id, IpcacheFlags.Meshed);
	});
	after(() => t?.destroy());

	test("a meshed pod's SYN to a meshed pod with no ztunnel listener is dropped as PROXY_UNAVAILABLE, with an event and no conntrack entry", async () => {
		const spec = tcp(A.ip, C.ip, 80);
		assert.equal(runCtx('weir_from_pod', spec), TC_ACT_SHOT);
		const ev = await t.waitEvent((e) => e.sport === spec.sport);
		assert.equal(ev.type, 'drop');
		assert.equal(ev.reasonName, 'PROXY_UNAVAILABLE');
		assert.equal(ev.reason, DropReason.PROXY_UNAVAILABLE);
		assert.equal(ev.direction, 'egress');
		assert.equal(ev.epId, A.ep);
		assert.equal(ev.srcIdentity, A.id);
		assert.equal(ev.dstIdentity, C.id);
		assert.ok(!dp.conntrack().some((c) => c.key.sport === spec.sport), 'the refused SYN left no entry');
		const counted = dp.readMetrics().samples.find((m) => m.reasonName === 'PROXY_UNAVAILABLE' && m.direction === 'egress');
		assert.ok(counted && counted.packets >= 1n);
	});

	test("a meshed pod's SYN to an address whose ipcache entry is not flagged meshed is policed, not captured: it needs no ztunnel", async () => {
		const ai = { epId: A.ep, identity: A.id, ifindex: LO };
		dp.setEndpoint(A.ip, { ...ai, flags: EndpointFlags.Meshed | EndpointFlags.EgressIsolated });
		try {
			allowRule(dp, { epId: A.ep, identity: B.id, direction: Dir.Egress, protocol: IPPROTO.TCP, port: 80, ruleId: 21 });
			allowRule(dp, { epId: A.ep, identity: Identity.World, direction: Dir.Egress, protocol: IPPROTO.TCP, port: 443, ruleId: 22 });
			await t.drain();
			for (const [spec, what, ruleId, dstIdentity] of [
				[tcp(A.ip, B.ip, 80), 'a pod that is not meshed', 21, B.id],
				[tcp(A.ip, '198.19.0.10', 443), 'an address outside the cluster (no ipcache entry)', 22, Identity.World],
			] as const) {
				assert.equal(runCtx('weir_from_pod', spec), TC_ACT_OK, what);
				const ev = await t.waitEvent((e) => e.sport === spec.sport);
				assert.deepEqual([ev.type, ev.verdict, ev.ruleId, ev.dstIdentity], ['policy-verdict', 'FORWARDED', ruleId, dstIdentity], what);
				const ct = dp.conntrack().find((c) => c.key.sport === spec.sport && c.key.scope === Dir.Egress);
				assert.ok(ct, `${what}: a conntrack entry`);
				assert.equal(ct.entry.flags & CtFlags.Proxy, 0, `${what}: not the ztunnel's`);
			}
			// The policy still decides: another port to the same pod is denied as such.
			const denied = tcp(A.ip, B.ip, 81);
			assert.equal(runCtx('weir_from_pod', denied), TC_ACT_SHOT);
			assert.equal((await t.waitEvent((e) => e.sport === denied.sport)).reasonName, 'POLICY_DENIED');
			// The ipcache flag is what decides: B flagged meshed, the same SYN is captured (and fails closed here).
			dp.setIpcache(`${B.ip}/32`, B.id, IpcacheFlags.Meshed);
			const now = tcp(A.ip, B.ip, 80);
			assert.equal(runCtx('weir_from_pod', now), TC_ACT_SHOT);
			assert.equal((await t.waitEvent((e) => e.sport === now.sport)).reasonName, 'PROXY_UNAVAILABLE');
		} finally {
			dp.setEndpoint(A.ip, { ...ai, flags: EndpointFlags.Meshed });
			dp.setIpcache(`${B.ip}/32`, B.id);
		}
	});

	test("a non-meshed pod's TCP, a meshed pod's UDP, and a meshed pod's packet of a connection it had before are not captured", () => {
		assert.equal(runCtx('weir_from_pod', tcp(B.ip, C.ip, 80)), TC_ACT_OK, 'not meshed');
		assert.equal(runCtx('weir_from_pod', { src: A.ip, dst: C.ip, protocol: 'udp', sport: nextPort(), dport: 53 }), TC_ACT_OK, 'UDP');
		assert.equal(runCtx('weir_from_pod', tcp(A.ip, C.ip, 80, TCP_FLAGS.ACK)), TC_ACT_OK, 'an ACK the ztunnel has no socket for');
	});

	test("a packet with the ztunnel's own mark is not captured", () => {
		assert.equal(runCtx('weir_from_pod', tcp(A.ip, C.ip, 80), ZT_MARK), TC_ACT_OK);
		assert.equal(runCtx('weir_from_pod', tcp(A.ip, C.ip, 80), ZT_MARK + 1), TC_ACT_SHOT, 'another mark is');
	});

	test("a connection the ztunnel opens to a pod is its own in conntrack, and the pod's replies fail closed without its socket", () => {
		const spec = tcp(A.ip, B.ip, 8080);
		// The ztunnel (marked) connects to non-meshed B; B's SYN-ACK must go back to that socket.
		assert.equal(runCtx('weir_to_pod', spec, ZT_MARK), TC_ACT_OK);
		const e = dp.conntrack().find((c) => c.key.sport === spec.sport && c.key.scope === Dir.Ingress);
		assert.ok(e && e.entry.flags & CtFlags.Proxy, 'marked entry');
		assert.equal(runCtx('weir_from_pod', reverse(spec, TCP_FLAGS.SYN | TCP_FLAGS.ACK)), TC_ACT_SHOT);
		// An unmarked connection to B is an ordinary one: its reply passes.
		const plain = tcp(A.ip, B.ip, 8080);
		assert.equal(runCtx('weir_to_pod', plain), TC_ACT_OK);
		assert.equal(runCtx('weir_from_pod', reverse(plain, TCP_FLAGS.SYN | TCP_FLAGS.ACK)), TC_ACT_OK);
	});

	test('with capture off, a meshed pod is only policed', async () => {
		const off = await TestDatapath.open('capture-off', { capture: false, proxyPort: 1 });
		try {
			off.dp.setEndpoint(A.ip, { epId: A.ep, identity: A.id, ifindex: LO, flags: EndpointFlags.Meshed });
			off.dp.setIpcache(`${C.ip}/32`, C.id, IpcacheFlags.Meshed);
			assert.equal(off.dp.program('weir_from_pod').testRun({ data: frame(tcp(A.ip, C.ip, 80)), ctx: skbCtx(LO), repeat: 1 }).retval, TC_ACT_OK);
		} finally {
			off.destroy();
		}
	});
});

describe('PeerAuthentication STRICT at the destination (weir_to_pod)', () => {
	// S is a meshed pod whose mode is STRICT, P a meshed pod left PERMISSIVE; A, a pod
	// that is not meshed, is the plaintext client. NODE_IP is this node (host identity).
	const ZT_MARK = DEFAULT_CONFIG.ztunnelMark;
	const S = { ip: '10.1.0.21', ep: 21, id: 1021 };
	const P = { ip: '10.1.0.22', ep: 22, id: 1022 };
	const { Meshed, MtlsStrict, MtlsPorts } = EndpointFlags;
	let t: TestDatapath;
	let dp: Datapath;
	const toPod = (spec: PacketSpec, mark = 0): number => dp.program('weir_to_pod').testRun({ data: frame(spec), ctx: skbCtx(LO, mark), repeat: 1 }).retval;
	const fromPod = (spec: PacketSpec): number => dp.program('weir_from_pod').testRun({ data: frame(spec), ctx: skbCtx(LO), repeat: 1 }).retval;
	const setS = (flags: number): void => dp.setEndpoint(S.ip, { epId: S.ep, identity: S.id, ifindex: LO, flags });
	const count = (name: string): bigint => dp.readMetrics().samples.find((m) => m.reasonName === name && m.direction === 'ingress')?.packets ?? 0n;
	const ctOf = (spec: PacketSpec) => dp.conntrack().find((c) => c.key.sport === spec.sport && c.key.scope === Dir.Ingress);

	before(async () => {
		t = await TestDatapath.open('mtls-testrun', { proxyPort: 1 });
		dp = t.dp;
		dp.setEndpoint(A.ip, { epId: A.ep, identity: A.id, ifindex: LO, flags: 0 });
		dp.setEndpoint(P.ip, { epId: P.ep, identity: P.id, ifindex: LO, flags: Meshed });
		setS(Meshed | MtlsStrict);
		dp.setIpcache(`${A.ip}/32`, A.id);
		dp.setIpcache(`${S.ip}/32`, S.id, IpcacheFlags.Meshed);
		dp.setIpcache(`${P.ip}/32`, P.id, IpcacheFlags.Meshed);
		dp.setIpcache(`${NODE_IP}/32`, Identity.Host);
	});
	after(() => t?.destroy());

	test('a plaintext SYN to a STRICT pod is dropped as MTLS_REQUIRED: one event, one count, no conntrack entry', async () => {
		const before = count('MTLS_REQUIRED');
		const spec = tcp(A.ip, S.ip, 8080);
		assert.equal(toPod(spec), TC_ACT_SHOT);
		const ev = await t.waitEvent((e) => e.sport === spec.sport);
		assert.deepEqual(
			[ev.type, ev.verdict, ev.reason, ev.reasonName, ev.direction, ev.epId, ev.srcIdentity, ev.dstIdentity, ev.dport],
			['drop', 'DROPPED', DropReason.MTLS_REQUIRED, 'MTLS_REQUIRED', 'ingress', S.ep, A.id, S.id, 8080],
		);
		assert.equal(count('MTLS_REQUIRED') - before, 1n);
		assert.equal(ctOf(spec), undefined, 'the refused SYN left no entry');
	});

	test("a SYN carrying the ztunnel's mark passes and is the ztunnel's connection; its packets after it pass unmarked", async () => {
		const spec = tcp(A.ip, S.ip, 8080);
		assert.equal(toPod(spec, ZT_MARK), TC_ACT_OK);
		const ev = await t.waitEvent((e) => e.sport === spec.sport);
		assert.deepEqual([ev.type, ev.verdict], ['policy-verdict', 'FORWARDED']);
		assert.ok((ctOf(spec)?.entry.flags ?? 0) & CtFlags.Proxy, 'a connection of the ztunnel');
		assert.equal(toPod({ ...spec, tcpFlags: TCP_FLAGS.ACK }), TC_ACT_OK, 'established: conntrack, not the mark, admits it');
		assert.equal(toPod(tcp(A.ip, S.ip, 8080), ZT_MARK + 1), TC_ACT_SHOT, 'another mark is no ztunnel');
	});

	test('from this node (kubelet probes) a plaintext SYN passes', async () => {
		const probe = tcp(NODE_IP, S.ip, 8081);
		assert.equal(toPod(probe), TC_ACT_OK);
		assert.equal((await t.waitEvent((e) => e.sport === probe.sport)).srcIdentity, Identity.Host);
	});

	test('a connection admitted before the pod became STRICT keeps flowing both ways; a new one is refused', async () => {
		setS(Meshed);
		const syn = tcp(A.ip, S.ip, 9000);
		assert.equal(toPod(syn), TC_ACT_OK, 'PERMISSIVE: plaintext in');
		setS(Meshed | MtlsStrict);
		try {
			assert.equal(fromPod(reverse(syn, TCP_FLAGS.SYN | TCP_FLAGS.ACK)), TC_ACT_OK, 'the reply');
			assert.equal(toPod({ ...syn, tcpFlags: TCP_FLAGS.ACK }), TC_ACT_OK, 'established');
			assert.equal(toPod({ ...syn, tcpFlags: TCP_FLAGS.ACK | TCP_FLAGS.PSH, payload: 10 }), TC_ACT_OK, 'data');
			assert.equal(toPod(tcp(A.ip, S.ip, 9000)), TC_ACT_SHOT, 'a new connection');
		} finally {
			setS(Meshed | MtlsStrict);
		}
	});

	test('a stray ACK leaves no entry for a later SYN of its tuple to ride: both are refused', async () => {
		const ack = tcp(A.ip, S.ip, 8080, TCP_FLAGS.ACK);
		assert.equal(toPod(ack), TC_ACT_SHOT);
		assert.equal(toPod({ ...ack, tcpFlags: TCP_FLAGS.SYN }), TC_ACT_SHOT);
		assert.equal(ctOf(ack), undefined);
	});

	test('a PERMISSIVE meshed pod, and UDP and ICMP to a STRICT one, are not affected (STRICT is TCP only)', async () => {
		assert.equal(toPod(tcp(A.ip, P.ip, 8080)), TC_ACT_OK, 'PERMISSIVE');
		assert.equal(toPod({ src: A.ip, dst: S.ip, protocol: 'udp', sport: nextPort(), dport: 53 }), TC_ACT_OK, 'UDP');
		assert.equal(toPod({ src: A.ip, dst: S.ip, protocol: 'icmp', icmpType: 8, id: 91 }), TC_ACT_OK, 'ICMP');
	});

	test('NetworkPolicy first: a connection both refuse is POLICY_DENIED; one the policy admits is MTLS_REQUIRED, with the rule that admitted it', async () => {
		setS(Meshed | MtlsStrict | EndpointFlags.IngressIsolated);
		try {
			const denied = tcp(A.ip, S.ip, 7000);
			assert.equal(toPod(denied), TC_ACT_SHOT);
			assert.equal((await t.waitEvent((e) => e.sport === denied.sport)).reasonName, 'POLICY_DENIED');
			allowRule(dp, { epId: S.ep, identity: A.id, direction: Dir.Ingress, protocol: IPPROTO.TCP, port: 7000, ruleId: 31 });
			const allowed = tcp(A.ip, S.ip, 7000);
			assert.equal(toPod(allowed), TC_ACT_SHOT);
			const ev = await t.waitEvent((e) => e.sport === allowed.sport);
			assert.deepEqual([ev.reasonName, ev.ruleId, ev.match], ['MTLS_REQUIRED', 31, 'l3-l4']);
			assert.equal(toPod(tcp(A.ip, S.ip, 7000), ZT_MARK), TC_ACT_OK, 'through the ztunnel, admitted by the rule');
		} finally {
			setS(Meshed | MtlsStrict);
		}
	});

	test('port-level modes: a PERMISSIVE port under STRICT, a STRICT port under PERMISSIVE; an unknown mode is STRICT; entries count only with the MtlsPorts flag', () => {
		dp.setMtlsPort(S.ep, 8081, MtlsPortMode.Permissive);
		dp.setMtlsPort(P.ep, 9090, MtlsPortMode.Strict);
		dp.setMtlsPort(P.ep, 9091, 7);
		try {
			assert.equal(toPod(tcp(A.ip, S.ip, 8081)), TC_ACT_SHOT, 'without MtlsPorts the entry is not read');
			setS(Meshed | MtlsStrict | MtlsPorts);
			dp.setEndpoint(P.ip, { epId: P.ep, identity: P.id, ifindex: LO, flags: Meshed | MtlsPorts });
			assert.equal(toPod(tcp(A.ip, S.ip, 8081)), TC_ACT_OK, 'PERMISSIVE port of a STRICT pod');
			assert.equal(toPod(tcp(A.ip, S.ip, 8080)), TC_ACT_SHOT, 'its other ports stay STRICT');
			assert.equal(toPod(tcp(A.ip, P.ip, 9090)), TC_ACT_SHOT, 'STRICT port of a PERMISSIVE pod');
			assert.equal(toPod(tcp(A.ip, P.ip, 9091)), TC_ACT_SHOT, 'a mode it does not know: STRICT');
			assert.equal(toPod(tcp(A.ip, P.ip, 8080)), TC_ACT_OK, 'its other ports stay PERMISSIVE');
			assert.equal(toPod(tcp(A.ip, P.ip, 9090), ZT_MARK), TC_ACT_OK, 'the ztunnel reaches the STRICT port');
			assert.deepEqual(
				dp
					.mtlsPortEntries()
					.map((e) => `${e.epId}:${e.port}=${e.mode}`)
					.sort(),
				['21:8081=1', '22:9090=2', '22:9091=7'],
			);
		} finally {
			for (const [ep, port] of [
				[S.ep, 8081],
				[P.ep, 9090],
				[P.ep, 9091],
			] as const)
				dp.deleteMtlsPort(ep, port);
			setS(Meshed | MtlsStrict);
			dp.setEndpoint(P.ip, { epId: P.ep, identity: P.id, ifindex: LO, flags: Meshed });
		}
	});

	test('audit mode does not lift STRICT: a denial it lets through is still refused as MTLS_REQUIRED, as DROPPED', async () => {
		const audit = await TestDatapath.open('mtls-audit', { audit: true, proxyPort: 1 });
		try {
			audit.dp.setEndpoint(S.ip, { epId: S.ep, identity: S.id, ifindex: LO, flags: Meshed | MtlsStrict | EndpointFlags.IngressIsolated });
			audit.dp.setIpcache(`${A.ip}/32`, A.id);
			const spec = tcp(A.ip, S.ip, 8080);
			assert.equal(audit.dp.program('weir_to_pod').testRun({ data: frame(spec), ctx: skbCtx(LO), repeat: 1 }).retval, TC_ACT_SHOT);
			const ev = await audit.waitEvent((e) => e.sport === spec.sport);
			assert.deepEqual([ev.type, ev.verdict, ev.reasonName], ['drop', 'DROPPED', 'MTLS_REQUIRED']);
		} finally {
			audit.destroy();
		}
	});

	test('with no ztunnel mark configured nothing passes for the ztunnel: STRICT admits only the node', async () => {
		const nomark = await TestDatapath.open('mtls-nomark', { ztunnelMark: 0, proxyPort: 1 });
		try {
			nomark.dp.setEndpoint(S.ip, { epId: S.ep, identity: S.id, ifindex: LO, flags: Meshed | MtlsStrict });
			nomark.dp.setIpcache(`${NODE_IP}/32`, Identity.Host);
			const run1 = (spec: PacketSpec, mark: number): number =>
				nomark.dp.program('weir_to_pod').testRun({ data: frame(spec), ctx: skbCtx(LO, mark), repeat: 1 }).retval;
			assert.equal(run1(tcp(A.ip, S.ip, 8080), 0), TC_ACT_SHOT);
			assert.equal(run1(tcp(A.ip, S.ip, 8080), ZT_MARK), TC_ACT_SHOT, 'a mark means nothing');
			assert.equal(run1(tcp(NODE_IP, S.ip, 8080), 0), TC_ACT_OK);
		} finally {
			nomark.destroy();
		}
	});
});

describe('event stream', () => {
	test('a poller that dies reaches subscribe() as one DatapathError and closes the stream', () => {
		requireRoot();
		ensureBpffs();
		// The child opens a datapath here, subscribes, has drops emitted, then closes the
		// poller's epoll fd under it (a real epoll_wait failure; test/helpers/ring-fault-child.ts).
		const pinRoot = testPinRoot('ringfault');
		try {
			const child = resolve(repoRoot, 'dist/test/helpers/ring-fault-child.js');
			const r = spawnSync(process.execPath, [child, 'datapath', pinRoot], { timeout: 20000, encoding: 'utf8' });
			assert.equal(r.signal, null, `the child did not exit by itself: ${r.stdout}${r.stderr}`);
			assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
			const out = JSON.parse(r.stdout) as {
				isDatapathError: boolean;
				code: string;
				message: string;
				cause: { code: string; op: string; errno: number };
				records: number;
			};
			assert.equal(out.records, 3, 'the events before the failure were delivered');
			assert.equal(out.isDatapathError, true);
			assert.equal(out.code, 'WEIR_ERR_EVENTS_STOPPED');
			assert.deepEqual(out.cause, { code: 'EBADF', op: 'epoll_wait', errno: 9 });
			assert.match(out.message, /^datapath events stopped: epoll_wait\(weir_events\): Bad file descriptor \(EBADF\).*until the agent restarts/);
			assert.equal(existsSync(pinRoot), false, 'the child destroyed its datapath');
		} finally {
			removePinRoot(pinRoot);
		}
	});
});
