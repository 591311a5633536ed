// Datapath benchmark: prints figures and ratios against baselines measured in the
// same run. Never asserts: targets are printed next to the figures.
//   bash scripts/bench.sh            (or: node dist/bench/datapath.bench.js [--quick])
//
// 1. ns per packet under BPF_PROG_TEST_RUN, with 10 000 policy entries and 100 000
//    ipcache prefixes loaded, next to an empty tc program in the same run:
//    - conntrack hit: one established packet, repeat 1e6;
//    - new connection, warm: the same SYN, repeat 1e6, on a datapath loaded with a
//      half-open lifetime of 0 (load-time configuration), so every repetition finds
//      its entry expired and takes the whole new-connection path: endpoint, ipcache,
//      policy, conntrack insert. Verdict events off; then with events on, in runs of
//      10 000 with the ring buffer drained between runs (so every reserve succeeds);
//    - new connection, cold: 1e6 distinct SYNs (2e5 with --quick), one syscall each
//      (repeat 1): caches are cold every time; the empty program measured the same way.
// 2. iperf3 TCP throughput between two pod namespaces with the programs attached,
//    against the same veths without them, in the same run.
import { execFileSync, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { Datapath, removePinRoot } from '../src/kernel/datapath.js';
import { IPPROTO } from '../src/kernel/codecs.js';
import { allowRule } from '../hack/lab/policy.js';
import { Dir, EndpointFlags, Identity } from '../src/kernel/layout.js';
import { native, NativeProgram } from '../src/kernel/addon.js';
import { ensureBpffs, requireRoot, testPinRoot } from '../test/helpers/bpf.js';
import { Topology, nsExec } from '../hack/lab/topology.js';
import { TCP_FLAGS, frame, skbCtx } from '../test/helpers/packets.js';
import { repoRoot } from '../src/shared/package.js';

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

/** Seeds a datapath with 100 000 ipcache prefixes and 10 000 policy entries; returns the load times. */
function seed(dp: Datapath): { ipcacheMs: number; policyMs: number } {
	let t0 = performance.now();
	for (let i = 0; i < 99_000; i++) dp.setIpcache(`10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`, Identity.FirstPod + (i % 5000));
	for (let i = 0; i < 1000; i++) dp.setIpcache(`172.${16 + (i >> 8)}.${i & 255}.0/24`, Identity.FirstCidr + i);
	const ipcacheMs = performance.now() - t0;
	// Endpoints: client 10.1.0.x (egress isolated) and server 10.1.0.2 (ingress isolated).
	dp.setEndpoint('10.1.0.2', { epId: 2, identity: 5002, ifindex: LO, flags: EndpointFlags.IngressIsolated });
	dp.setIpcache('10.1.0.1/32', 5001);
	dp.setIpcache('10.1.0.2/32', 5002);
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
	// The entries the benchmark's packets hit are among the 10 000.
	entries[0] = { epId: 1, identity: 5002, direction: Dir.Egress, protocol: IPPROTO.TCP, port: 80, ruleId: 1 };
	entries[1] = { epId: 2, identity: 5001, direction: Dir.Ingress, protocol: IPPROTO.TCP, port: 80, ruleId: 2 };
	for (const e of entries) allowRule(dp, e);
	return { ipcacheMs, policyMs: performance.now() - t0 };
}

function client(dp: Datapath, lastOctet: number): void {
	dp.setEndpoint(`10.1.0.${lastOctet}`, { epId: 1, identity: 5001, ifindex: LO, flags: EndpointFlags.EgressIsolated });
}

const syn = (sport: number, lastOctet = 1): Buffer => {
	const b = frame({ src: '10.1.0.1', dst: '10.1.0.2', protocol: 'tcp', sport, dport: 80, tcpFlags: TCP_FLAGS.SYN });
	b.writeUInt8(lastOctet, 14 + 15);
	return b;
};

async function testRunBench(): Promise<void> {
	const pinRoot = testPinRoot('bench');
	const warmRoot = testPinRoot('bench-warm');
	const dp = await Datapath.open({ pinRoot });
	const warm = await Datapath.open({ pinRoot: warmRoot, config: { ctSynLifetimeSec: 0, verdictEvents: false } });
	const warmEv = await Datapath.open({ pinRoot: testPinRoot('bench-warm-ev'), config: { ctSynLifetimeSec: 0, verdictEvents: true } });
	const emptyObj = native().openObject(resolve(repoRoot, 'build/bench/empty.bpf.o'));
	try {
		await emptyObj.load();
		const empty = emptyObj.program('weir_bench_empty');
		const loads = seed(dp);
		seed(warm);
		seed(warmEv);
		for (const d of [dp, warm, warmEv]) client(d, 1);
		const ctx = skbCtx(LO);
		const policyCount = dp.policyEntryCount();
		const ipcacheCount = dp.ipcacheEntries().length;

		// Conntrack hit: create the connection, then repeat an ACK of it.
		const from = dp.program('weir_from_pod');
		const ack = frame({ src: '10.1.0.1', dst: '10.1.0.2', protocol: 'tcp', sport: 1, dport: 80, tcpFlags: TCP_FLAGS.ACK });
		if (from.testRun({ data: syn(1), ctx }).retval !== 0) throw new Error('seed SYN was dropped');
		const emptyRepeat = empty.testRun({ data: ack, ctx, repeat: REPEAT }).duration;
		const ctHit = from.testRun({ data: ack, ctx, repeat: REPEAT }).duration;

		// New connection, warm, events off.
		const warmFrom = warm.program('weir_from_pod');
		if (warmFrom.testRun({ data: syn(2), ctx }).retval !== 0) throw new Error('warm SYN was dropped');
		const newWarm = warmFrom.testRun({ data: syn(2), ctx, repeat: REPEAT }).duration;
		if (warm.conntrack().length !== 1) throw new Error('warm run did not keep replacing one entry');

		// New connection, warm, with verdict events: runs the ring buffer can hold, drained between.
		let events = 0;
		const stop = warmEv.subscribe(() => events++);
		const evFrom = warmEv.program('weir_from_pod');
		let evTotal = 0;
		const RUNS = 20;
		const PER_RUN = 10_000;
		for (let r = 0; r < RUNS; r++) {
			evTotal += evFrom.testRun({ data: syn(3), ctx, repeat: PER_RUN }).duration;
			const want = (r + 1) * PER_RUN;
			const deadline = Date.now() + 5000;
			while (events < want && Date.now() < deadline) await new Promise((res) => setTimeout(res, 5));
		}
		stop();
		const newWarmEv = evTotal / RUNS;
		const lost = warmEv.readMetrics().eventsLost;

		// New connection, cold: distinct SYNs, each its own syscall; sources 10.1.0.3.. rotate.
		const sources = Math.ceil(NEW_CONN_RUNS / 60000);
		for (let s = 3; s < 3 + sources; s++) client(dp, s);
		const fresh = (i: number): Buffer => syn(1024 + (i % 60000), 3 + Math.floor(i / 60000));
		const newCold = perRunAverage(from, fresh, NEW_CONN_RUNS);
		const emptyCold = perRunAverage(empty, fresh, NEW_CONN_RUNS);

		console.log('## BPF_PROG_TEST_RUN (weir_from_pod: egress-isolated client, connection allowed by policy)');
		console.log(`loaded: ${policyCount} policy trie entries (${fmt(loads.policyMs, 0)} ms), ${ipcacheCount} ipcache prefixes (${fmt(loads.ipcacheMs, 0)} ms)`);
		console.log(`empty tc program, repeat ${REPEAT}:                 ${fmt(emptyRepeat)} ns/packet`);
		console.log(`conntrack hit, repeat ${REPEAT}:                    ${fmt(ctHit)} ns/packet  (target <= 80; ${fmt(ctHit / emptyRepeat)}x empty)`);
		console.log(`new connection, warm, repeat ${REPEAT}:             ${fmt(newWarm)} ns/packet  (target <= 400; ${fmt(newWarm / emptyRepeat)}x empty)`);
		console.log(`new connection, warm + verdict events, ${RUNS}x${PER_RUN}: ${fmt(newWarmEv)} ns/packet  (${events} events read, ${lost} lost)`);
		console.log(`empty tc program, ${NEW_CONN_RUNS} runs x repeat 1:        ${fmt(emptyCold)} ns/packet`);
		console.log(`new connection, cold, ${NEW_CONN_RUNS} runs x repeat 1:    ${fmt(newCold)} ns/packet  (${fmt(newCold - emptyCold)} ns above empty)`);
	} finally {
		emptyObj.close();
		for (const d of [dp, warm, warmEv]) d.destroy();
		removePinRoot(pinRoot);
		removePinRoot(warmRoot);
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
			allowRule(dp, { epId: 2, identity: 6000, direction: Dir.Ingress, protocol: IPPROTO.TCP, port: 5201, ruleId: 1 });
			const rounds: Array<{ bare: number; weir: number }> = [];
			const ROUNDS = quick ? 2 : 4;
			for (let r = 0; r < ROUNDS; r++) {
				const bare = await iperf(topo, seconds);
				for (const p of topo.pods) dp.attach(p.hostIfindex, { netns: `/run/netns/${topo.nodeNs}` });
				const weir = await iperf(topo, seconds);
				for (const p of topo.pods) dp.detach(p.hostIfindex);
				rounds.push({ bare, weir });
			}
			const median = (xs: number[]): number => {
				const s = [...xs].sort((a, b) => a - b);
				return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
			};
			const bare = median(rounds.map((x) => x.bare));
			const weir = median(rounds.map((x) => x.weir));
			console.log(`\n## iperf3 TCP, pod to pod over veths, ${seconds} s per run, ${ROUNDS} rounds alternating (medians)`);
			console.log(`without programs: ${fmt(bare / 1e9, 2)} Gbit/s   (rounds: ${rounds.map((x) => fmt(x.bare / 1e9, 2)).join(', ')})`);
			console.log(`with Weir:        ${fmt(weir / 1e9, 2)} Gbit/s   (rounds: ${rounds.map((x) => fmt(x.weir / 1e9, 2)).join(', ')})`);
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
console.log(
	`# Weir datapath benchmark (${new Date().toISOString()}, kernel ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}, libbpf ${native().libbpfVersion()})`,
);
await testRunBench();
await throughputBench();
