// CNI benchmark (figures printed, never asserted): ADD and DEL latency of weir-cni
// (forwarder -> agent: veth, IPAM, routes, datapath attach, endpoint) next to the
// reference ptp plugin with host-local, measured in the same run on the same node
// namespace: 100 sequential pods, then 30 pods at once. Both plugins are invoked the
// way a runtime does (exec with CNI_* env and the config on stdin), from the node
// network namespace (nsenter --net).
//   bash scripts/bench.sh cni   (or: node dist/bench/cni.bench.js [--pods 100] [--parallel 30])
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { CniLab, run } from '../test/helpers/cni-lab.js';
import { pct } from './stats.js';

interface Sample {
	ms: number;
	ok: boolean;
}

async function invoke(lab: CniLab, plugin: string, conf: object, cmd: 'ADD' | 'DEL', id: string, netns: string): Promise<Sample> {
	const env = {
		CNI_COMMAND: cmd,
		CNI_CONTAINERID: id,
		CNI_NETNS: netns,
		CNI_IFNAME: 'eth0',
		CNI_PATH: lab.binDir,
		CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=${id}`,
		PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin',
	};
	const t0 = process.hrtime.bigint();
	const r = await run('nsenter', [`--net=/run/netns/${lab.nodeNs}`, '--', join(lab.binDir, plugin)], { env, input: JSON.stringify(conf) });
	const ms = Number(process.hrtime.bigint() - t0) / 1e6;
	if (r.code !== 0) process.stderr.write(`${plugin} ${cmd} ${id}: ${r.stdout}${r.stderr}\n`);
	return { ms, ok: r.code === 0 };
}

async function measure(lab: CniLab, plugin: string, conf: object, tag: string, pods: number, parallel: number): Promise<Record<string, number[]>> {
	const out: Record<string, number[]> = { 'seq ADD': [], 'seq DEL': [], 'par ADD': [], 'par DEL': [] };
	const failures = { n: 0 };
	const record = (key: string, s: Sample): void => {
		out[key]!.push(s.ms);
		if (!s.ok) failures.n++;
	};
	const seq = Array.from({ length: pods }, (_, i) => ({ id: `${tag}-s${i}`, ns: lab.addPodNs(`${tag}s${i}`) }));
	for (const p of seq) record('seq ADD', await invoke(lab, plugin, conf, 'ADD', p.id, p.ns));
	for (const p of seq) record('seq DEL', await invoke(lab, plugin, conf, 'DEL', p.id, p.ns));
	for (const p of seq) lab.delPodNs(p.ns);
	const par = Array.from({ length: parallel }, (_, i) => ({ id: `${tag}-p${i}`, ns: lab.addPodNs(`${tag}p${i}`) }));
	(await Promise.all(par.map((p) => invoke(lab, plugin, conf, 'ADD', p.id, p.ns)))).forEach((s) => record('par ADD', s));
	(await Promise.all(par.map((p) => invoke(lab, plugin, conf, 'DEL', p.id, p.ns)))).forEach((s) => record('par DEL', s));
	for (const p of par) lab.delPodNs(p.ns);
	if (failures.n) process.stderr.write(`${plugin}: ${failures.n} failed calls\n`);
	return out;
}

async function main(): Promise<void> {
	const { values } = parseArgs({ options: { pods: { type: 'string', default: '100' }, parallel: { type: 'string', default: '30' } } });
	const pods = Number(values.pods);
	const parallel = Number(values.parallel);
	const lab = CniLab.create({ portmap: false, openIdentity: 300, subnet: '10.79.0.0/24' });
	try {
		await lab.startAgent();
		const weirConf = lab.netconf();
		const ptpConf = {
			cniVersion: '1.0.0',
			name: 'ptp-bench',
			type: 'ptp',
			ipMasq: false,
			ipam: { type: 'host-local', ranges: [[{ subnet: '10.81.0.0/24' }]], dataDir: lab.ipamDir },
		};
		// Interleave-free but same run, same node namespace, same machine state.
		const ptp = await measure(lab, 'ptp', ptpConf, 'ptp', pods, parallel);
		const weir = await measure(lab, 'weir-cni', weirConf, 'weir', pods, parallel);
		const rows: string[][] = [['phase', 'ptp p50', 'ptp p99', 'weir p50', 'weir p99', 'weir/ptp p50']];
		for (const k of Object.keys(weir)) {
			const w = weir[k]!;
			const p = ptp[k]!;
			rows.push([
				`${k} (${w.length})`,
				pct(p, 50).toFixed(1),
				pct(p, 99).toFixed(1),
				pct(w, 50).toFixed(1),
				pct(w, 99).toFixed(1),
				(pct(w, 50) / pct(p, 50)).toFixed(2),
			]);
		}
		const width = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
		console.log(`CNI ADD/DEL latency in ms (${pods} sequential pods, ${parallel} parallel), ${new Date().toISOString()}`);
		for (const r of rows) console.log(r.map((c, i) => c.padStart(width[i]!)).join('  '));
		console.log('weir-cni: static forwarder -> agent over a unix socket; host-local IPAM exec; tcx attach; endpoint map write; state file written by rename');
		await lab.stopAgent();
	} finally {
		lab.destroy();
	}
}

main().catch((err: unknown) => {
	console.error(err);
	process.exit(1);
});
