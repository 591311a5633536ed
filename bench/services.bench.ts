// Services benchmark: connect() latency from a pod to a ClusterIP with 1 000 Services
// x 10 backends in place, in the same run, as ratios to a direct connect:
//   - Weir's socket load balancer (cgroup connect4 over 1 000 frontends and 10 000
//     slots), the client process being in the cgroup;
//   - kube-proxy-style iptables DNAT where kube-proxy puts it for pod traffic, the node
//     namespace's PREROUTING (KUBE-SERVICES -> KUBE-SVC-* with statistic random ->
//     KUBE-SEP-* DNAT, 1 000 services x 10 endpoints), loaded with iptables-nft, then
//     removed and loaded with iptables-legacy;
//   - a direct connect to the backend's address.
// One client process (in the cgroup, in a pod namespace) makes every connect, so the
// variants differ only in the path: a destination that is no Weir frontend (the
// backend, the iptables ClusterIPs) passes connect4 untouched. The backend is a server
// in another pod namespace on 10 ports (the measured Service's 10 backends). Latency is
// from connect() to the connect event (SYN, SYN-ACK, ACK through the node namespace),
// N serial connects per variant in interleaved rounds, each round starting with the
// next variant. Three phases: no iptables rules, the nft rules, the legacy rules; with
// rules loaded every new connection of the node, direct ones too, walks KUBE-SERVICES.
// Prints; never asserts. On a shared 2-core machine p99 is mostly scheduling noise.
//   bash scripts/bench.sh services   (or: node dist/bench/services.bench.js [--quick])
import { SocketLb } from '../src/kernel/service-lb.js';
import { removePinRoot } from '../src/kernel/datapath.js';
import { ensureBpffs, requireRoot, testPinRoot } from '../test/helpers/bpf.js';
import { LbLab, type LbClient } from '../test/helpers/lb-lab.js';
import { nsExec, sh } from '../hack/lab/topology.js';
import { pct } from './stats.js';

const quick = process.argv.includes('--quick');
const SERVICES = 1000;
const BACKENDS = 10;
const ROUNDS = 10;
const PER_ROUND = quick ? 50 : 200;
const MEASURED = 500; // the Service connected to: the middle of kube-proxy's KUBE-SERVICES list
const SERVER = '10.214.0.20';
const PORT0 = 8080;

/** The i-th Service's ClusterIP: Weir's in 198.19.0.0/17, the iptables ones in 198.19.128.0/17. */
function vip(i: number, iptables: boolean): string {
	return `198.19.${(iptables ? 128 : 0) + (i >> 8)}.${(i & 255) % 250 || 250}`;
}

function backendsOf(i: number): Array<{ ip: string; port: number }> {
	if (i === MEASURED) return Array.from({ length: BACKENDS }, (_, b) => ({ ip: SERVER, port: PORT0 + b }));
	return Array.from({ length: BACKENDS }, (_, b) => ({ ip: `10.215.${i >> 4}.${((i & 15) << 4) + b + 1}`, port: 80 }));
}

/** kube-proxy's nat table for these Services (pod traffic: PREROUTING), as iptables-restore input. */
function kubeProxyRules(): string {
	const chains: string[] = [':KUBE-SERVICES - [0:0]', ':KUBE-MARK-MASQ - [0:0]'];
	const rules: string[] = [
		'-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
		'-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000',
	];
	for (let i = 0; i < SERVICES; i++) {
		const svc = `KUBE-SVC-${String(i).padStart(12, '0')}`;
		chains.push(`:${svc} - [0:0]`);
		rules.push(`-A KUBE-SERVICES -d ${vip(i, true)}/32 -p tcp -m comment --comment "ns/svc-${i}:http cluster IP" -m tcp --dport 80 -j ${svc}`);
		backendsOf(i).forEach((b, k) => {
			const sep = `KUBE-SEP-${String(i).padStart(8, '0')}${String(k).padStart(4, '0')}`;
			chains.push(`:${sep} - [0:0]`);
			const left = BACKENDS - k;
			rules.push(left > 1 ? `-A ${svc} -m statistic --mode random --probability ${(1 / left).toFixed(11)} -j ${sep}` : `-A ${svc} -j ${sep}`);
			rules.push(`-A ${sep} -s ${b.ip}/32 -j KUBE-MARK-MASQ`);
			rules.push(`-A ${sep} -p tcp -m tcp -j DNAT --to-destination ${b.ip}:${b.port}`);
		});
	}
	return ['*nat', ...chains, ...rules, 'COMMIT', ''].join('\n');
}

interface Variant {
	name: string;
	client: LbClient;
	ip: string;
	port: number;
}

async function measure(variants: readonly Variant[]): Promise<Map<string, { us: number[]; failures: number }>> {
	const out = new Map(variants.map((v) => [v.name, { us: [] as number[], failures: 0 }]));
	for (const v of variants) await v.client.bench(v.ip, v.port, 20); // warm-up
	for (let r = 0; r < ROUNDS; r++) {
		// Each round starts with the next variant: no variant always runs first.
		for (const v of [...variants.slice(r % variants.length), ...variants.slice(0, r % variants.length)]) {
			const a = await v.client.bench(v.ip, v.port, PER_ROUND);
			out.get(v.name)!.us.push(...a.us);
			out.get(v.name)!.failures += a.failures;
		}
	}
	return out;
}

function report(title: string, results: Map<string, { us: number[]; failures: number }>, baseline: string): void {
	const base = results.get(baseline)!;
	const b50 = pct(base.us, 50);
	const b99 = pct(base.us, 99);
	console.log(`\n## ${title}`);
	console.log(`${'variant'.padEnd(52)} ${'p50 us'.padStart(8)} ${'p99 us'.padStart(8)} ${'p50 x'.padStart(7)} ${'p99 x'.padStart(7)}  n / failed`);
	for (const [name, r] of results) {
		const p50 = pct(r.us, 50);
		const p99 = pct(r.us, 99);
		console.log(
			`${name.padEnd(52)} ${p50.toFixed(1).padStart(8)} ${p99.toFixed(1).padStart(8)} ${(p50 / b50).toFixed(3).padStart(7)} ${(p99 / b99).toFixed(3).padStart(7)}  ${r.us.length} / ${r.failures}`,
		);
	}
}

async function main(): Promise<void> {
	requireRoot();
	ensureBpffs();
	const pinRoot = testPinRoot('bench-lb');
	const lab = await LbLab.create('bench-lb', [
		{ name: 'client', ip: '10.214.0.10' },
		{ name: 'server', ip: SERVER },
	]);
	let lb: SocketLb | undefined;
	const node = lab.topo.nodeNs;
	const flush = (cmd: string): void => {
		nsExec(node, [cmd, '-t', 'nat', '-F'], { allowFail: true });
		nsExec(node, [cmd, '-t', 'nat', '-X'], { allowFail: true });
	};
	try {
		await lab.ident(
			lab.pod('server'),
			'srv',
			Array.from({ length: BACKENDS }, (_, b) => PORT0 + b),
		);
		lb = await SocketLb.open({ pinRoot, cgroupPath: lab.cgroup });
		let t0 = performance.now();
		for (let i = 0; i < SERVICES; i++) {
			lb.upsertService({ id: i + 1, frontend: { vip: vip(i, false), port: 80, protocol: 'TCP' }, backends: backendsOf(i), affinitySec: 0 });
		}
		const upsertMs = performance.now() - t0;
		const rules = kubeProxyRules();
		const ruleCount = rules.split('\n').filter((l) => l.startsWith('-A')).length;

		const client = lab.client(lab.pod('client'), { inCgroup: true });
		const direct: Variant = { name: 'direct to the backend', client, ip: SERVER, port: PORT0 };
		const weir: Variant = { name: 'ClusterIP via Weir socket LB', client, ip: vip(MEASURED, false), port: 80 };

		console.log(
			`Services benchmark, ${new Date().toISOString()}: ${SERVICES} Services x ${BACKENDS} backends, ${ROUNDS} rounds x ${PER_ROUND} serial connects per variant`,
		);
		console.log(`socket LB: ${SERVICES} upsertService calls in ${upsertMs.toFixed(0)} ms (${SERVICES * (BACKENDS + 1)} map entries)`);
		const phase0 = await measure([direct, weir]);
		report('no iptables rules: Weir socket LB alone (ratios to the direct connect)', phase0, direct.name);
		const base = phase0.get(direct.name)!.us;
		const lbP50 = pct(phase0.get(weir.name)!.us, 50);
		const summary: string[] = [];
		for (const cmd of ['iptables-nft', 'iptables-legacy']) {
			t0 = performance.now();
			sh('ip', ['netns', 'exec', node, `${cmd}-restore`, '--noflush'], { input: rules });
			const loadMs = performance.now() - t0;
			try {
				const dnat: Variant = { name: `ClusterIP via ${cmd} DNAT`, client, ip: vip(MEASURED, true), port: 80 };
				const results = await measure([direct, weir, dnat]);
				console.log(
					`\n${cmd}: ${ruleCount} rules in ${SERVICES * (BACKENDS + 1) + 2} chains in the node's nat table, restored in ${loadMs.toFixed(0)} ms; the measured Service is #${MEASURED + 1} of ${SERVICES} in KUBE-SERVICES`,
				);
				report(`${cmd} rules loaded (ratios to the direct connect of this phase)`, results, direct.name);
				const dnatP50 = pct(results.get(dnat.name)!.us, 50);
				summary.push(
					`${cmd} DNAT p50 ${dnatP50.toFixed(1)} us = ${(dnatP50 / pct(base, 50)).toFixed(3)}x the direct connect without rules; Weir's p50 (no rules) is ${(lbP50 / dnatP50).toFixed(3)}x it`,
				);
			} finally {
				flush(cmd);
			}
		}
		console.log(
			`\n## Weir instead of kube-proxy: Weir socket LB p50 ${lbP50.toFixed(1)} us = ${(lbP50 / pct(base, 50)).toFixed(3)}x the direct connect (no rules)`,
		);
		for (const line of summary) console.log(line);
	} finally {
		flush('iptables-nft');
		flush('iptables-legacy');
		try {
			lb?.detach();
			lb?.close();
		} finally {
			removePinRoot(pinRoot);
			await lab.destroy();
		}
	}
}

await main();
