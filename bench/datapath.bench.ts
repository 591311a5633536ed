// Datapath benchmark: prints figures and ratios against baselines measured in the
// same run. Never asserts: targets are printed next to the figures.
//   bash scripts/bench.sh            (or: node dist/bench/datapath.bench.js [--quick])
//
// 1. ns per packet under BPF_PROG_TEST_RUN, with 10 000 policy entries and 100 000
//    ipcache prefixes loaded, next to an empty tc program:
//    - conntrack hit: one established packet, repeat 1e6 (kernel-averaged);
//    - new connection: a repeated packet is only new once, so every run is a distinct
//      SYN (fresh source port) with repeat 1, 1e6 runs (2e5 with --quick); the
//      kernel's per-run figure is averaged; the empty program is measured the same
//      way for the baseline of that mode.
// 2. iperf3 TCP throughput between two pod namespaces with the programs attached,
//    against the same veths without them, in the same run.
import { execFileSync, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { Datapath, removePinRoot } from '../src/bpf/datapath.js';
import { IPPROTO } from '../src/bpf/codecs.js';
import { Dir, EndpointFlags, Identity } from '../src/bpf/layout.js';
import { native, NativeProgram } from '../src/bpf/native.js';
import { ensureBpffs, requireRoot, testPinRoot } from '../test/helpers/bpf.js';
import { Topology, nsExec } from '../hack/lab/topology.js';
import { TCP_FLAGS, frame, skbCtx } from '../test/helpers/packets.js';
import { repoRoot } from '../src/paths.js';

const quick = process.argv.includes('--quick');
const NEW_CONN_RUNS = quick ? 200_000 : 1_000_000;
const REPEAT = 1_000_000;
const LO = 1;

function fmt(n: number, digits = 1): string {
	return n.toFixed(digits);
}

function perRunAverage(prog: NativeProgram, packets: (i: number) => Buffer, runs: number): number {
	const ctx = skbCtx(LO);
	let total = 0;
	for (let i = 0; i < runs; i++) total += prog.testRun({ data: packets(i), ctx, repeat: 1, dataOutSize: 128 }).duration;
	return total / runs;
}

async function testRunBench(): Promise<void> {
	const pinRoot = testPinRoot('bench');
	const dp = await Datapath.open({ pinRoot, config: { verdictEvents: true } });
	const emptyObj = native().openObject(resolve(repoRoot, 'build/bench/empty.bpf.o'));
	try {
		await emptyObj.load();
		const empty = emptyObj.program('weir_bench_empty');

		// 100 000 ipcache prefixes: 99 000 pod /32s and 1 000 CIDR /24s.
		let t0 = performance.now();
		for (let i = 0; i < 99_000; i++) dp.setIpcache(`10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`, Identity.FirstPod + (i % 5000));
		for (let i = 0; i < 1000; i++) dp.setIpcache(`172.${16 + (i >> 8)}.${i & 255}.0/24`, Identity.FirstCidr + i);
		const ipcacheMs = performance.now() - t0;

		// Endpoints: client 10.1.0.1 (egress isolated), server 10.1.0.2 (ingress isolated).
		dp.setEndpoint('10.1.0.1', { epId: 1, identity: 5001, ifindex: LO, flags: EndpointFlags.EgressIsolated });
		dp.setEndpoint('10.1.0.2', { epId: 2, identity: 5002, ifindex: LO, flags: EndpointFlags.IngressIsolated });
		dp.setIpcache('10.1.0.1/32', 5001);
		dp.setIpcache('10.1.0.2/32', 5002);

		// 10 000 policy entries over 100 endpoints; the ones the packets hit are among them.
		t0 = performance.now();
		const entries = [];
		for (let ep = 1; ep <= 100; ep++) {
			for (let j = 0; j < 100; j++) {
				entries.push({
					epId: ep,
					identity: Identity.FirstPod + ((ep * 100 + j) % 5000),
					direction: j % 2 === 0 ? Dir.Ingress : Dir.Egress,
					protocol: j % 3 === 0 ? IPPROTO.UDP : IPPROTO.TCP,
					port: 1000 + j,
					ruleId: ep * 1000 + j,
				});
			}
		}
		entries[0] = { epId: 1, identity: 5002, direction: Dir.Egress, protocol: IPPROTO.TCP, port: 80, ruleId: 1 };
		entries[1] = { epId: 2, identity: 5001, direction: Dir.Ingress, protocol: IPPROTO.TCP, port: 80, ruleId: 2 };
		dp.allowMany(entries);
		const policyMs = performance.now() - t0;
		const policyCount = dp.policyEntryCount();
		const ipcacheCount = dp.ipcacheEntries().length;

		const syn = (sport: number): Buffer => frame({ src: '10.1.0.1', dst: '10.1.0.2', protocol: 'tcp', sport, dport: 80, tcpFlags: TCP_FLAGS.SYN });
		const from = dp.program('weir_from_pod');

		// Conntrack hit: create the connection, then repeat an ACK of it.
		const ack = frame({ src: '10.1.0.1', dst: '10.1.0.2', protocol: 'tcp', sport: 1, dport: 80, tcpFlags: TCP_FLAGS.ACK });
		if (from.testRun({ data: syn(1), ctx: skbCtx(LO) }).retval !== 0) throw new Error('seed SYN was dropped');
		const ctHit = from.testRun({ data: ack, ctx: skbCtx(LO), repeat: REPEAT }).duration;
		const emptyRepeat = empty.testRun({ data: ack, ctx: skbCtx(LO), repeat: REPEAT }).duration;

		// New connections: distinct SYNs, each its own tuple (source port, then source
		// address); the events they emit are consumed as the agent would.
		let events = 0;
		const unsubscribe = dp.subscribe(() => events++);
		const ports = (i: number): number => 1024 + (i % 60000);
		// Register the extra client addresses the new-connection runs use.
		const sources = Math.ceil(NEW_CONN_RUNS / 60000);
		for (let s = 3; s < 3 + sources; s++) {
			dp.setEndpoint(`10.1.0.${s}`, { epId: 1, identity: 5001, ifindex: LO, flags: EndpointFlags.EgressIsolated });
		}
		const synFrom = (i: number): Buffer => {
			const b = syn(ports(i));
			b.writeUInt8(3 + Math.floor(i / 60000), 14 + 15); // last octet of the source
			return b;
		};
		const newConnNs = perRunAverage(from, synFrom, NEW_CONN_RUNS);
		const emptyPerRun = perRunAverage(empty, synFrom, NEW_CONN_RUNS);
		await new Promise((r) => setTimeout(r, 200));
		unsubscribe();
		const verdicts = dp.readMetrics().samples.find((s) => s.reasonName === 'OK' && s.direction === 'egress')?.packets ?? 0n;

		console.log('## BPF_PROG_TEST_RUN (weir_from_pod, egress-isolated client, allowed by policy)');
		console.log(`loaded: ${policyCount} policy trie entries (${fmt(policyMs, 0)} ms), ${ipcacheCount} ipcache prefixes (${fmt(ipcacheMs, 0)} ms)`);
		console.log(`empty tc program, repeat ${REPEAT}:          ${fmt(emptyRepeat)} ns/packet`);
		console.log(`conntrack hit, repeat ${REPEAT}:             ${fmt(ctHit)} ns/packet  (target <= 80; ${fmt(ctHit / Math.max(emptyRepeat, 1))}x empty)`);
		console.log(`empty tc program, ${NEW_CONN_RUNS} runs x repeat 1:  ${fmt(emptyPerRun)} ns/packet`);
		console.log(`new connection, ${NEW_CONN_RUNS} runs x repeat 1:    ${fmt(newConnNs)} ns/packet  (target <= 400; ${fmt(newConnNs - emptyPerRun)} ns above empty)`);
		console.log(`verdict events read during the run: ${events} (forwarded egress packets counted: ${verdicts})`);
	} finally {
		emptyObj.close();
		dp.destroy();
		removePinRoot(pinRoot);
	}
}

async function iperf(topo: Topology, seconds: number): Promise<number> {
	const [a, b] = topo.pods as [(typeof topo.pods)[0], (typeof topo.pods)[0]];
	const server = spawn('ip', ['netns', 'exec', b.netns, 'iperf3', '-s', '-1', '-p', '5201'], { stdio: 'ignore' });
	try {
		await new Promise((r) => setTimeout(r, 300));
		const out = nsExec(a.netns, ['iperf3', '-c', b.ip, '-p', '5201', '-t', String(seconds), '-J']);
		const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
		return j.end.sum_received.bits_per_second;
	} finally {
		server.kill('SIGKILL');
	}
}

async function throughputBench(): Promise<void> {
	const topo = Topology.create(2, 202);
	const pinRoot = testPinRoot('bench-iperf');
	const seconds = quick ? 3 : 5;
	try {
		const dp = await Datapath.open({ pinRoot });
		try {
			topo.pods.forEach((p, i) => {
				dp.setEndpoint(p.ip, { epId: i + 1, identity: 6000 + i, ifindex: p.hostIfindex, flags: EndpointFlags.IngressIsolated });
				dp.setIpcache(`${p.ip}/32`, 6000 + i);
			});
			dp.allow({ epId: 2, identity: 6000, direction: Dir.Ingress, protocol: IPPROTO.TCP, port: 5201, ruleId: 1 });
			const rounds: Array<{ bare: number; weir: number }> = [];
			for (let r = 0; r < 2; r++) {
				const bare = await iperf(topo, seconds);
				for (const p of topo.pods) dp.attach(p.hostIfindex, { netns: `/run/netns/${topo.nodeNs}` });
				const weir = await iperf(topo, seconds);
				for (const p of topo.pods) dp.detach(p.hostIfindex);
				rounds.push({ bare, weir });
			}
			const bare = rounds.reduce((s, x) => s + x.bare, 0) / rounds.length;
			const weir = rounds.reduce((s, x) => s + x.weir, 0) / rounds.length;
			console.log(`\n## iperf3 TCP, pod to pod over veths, ${seconds} s x ${rounds.length} rounds each, alternating`);
			console.log(`without programs: ${fmt(bare / 1e9, 2)} Gbit/s`);
			console.log(`with Weir:        ${fmt(weir / 1e9, 2)} Gbit/s`);
			console.log(`ratio:            ${fmt(weir / bare, 3)}  (target >= 0.95)`);
		} finally {
			dp.destroy();
		}
	} finally {
		removePinRoot(pinRoot);
		topo.destroy();
	}
}

requireRoot();
ensureBpffs();
console.log(`# Weir datapath benchmark (${new Date().toISOString()}, kernel ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}, libbpf ${native().libbpfVersion()})`);
await testRunBench();
await throughputBench();
