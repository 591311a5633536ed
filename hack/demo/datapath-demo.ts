// The datapath demonstration (until the local cluster and installer land): the
// segregation scenario of DESIGN.md on pod namespaces of one lab node, enforced by
// the eBPF programs, with the drop read back from the ring buffer.
//   node dist/hack/demo/datapath-demo.js [--keep]
// --keep leaves the lab running and streams flows until Ctrl-C.
import { Datapath, removePinRoot } from '../../src/kernel/datapath.js';
import { allowRule } from '../lab/policy.js';
import { DatapathEvent, IPPROTO } from '../../src/kernel/codecs.js';
import { Dir, EndpointFlags, Identity } from '../../src/kernel/layout.js';
import { ensureBpffs, requireRoot } from '../../src/kernel/bpffs.js';
import { Pod, Topology } from '../lab/topology.js';

const keep = process.argv.includes('--keep');
const say = (s: string): void => void process.stdout.write(`${s}\n`);

requireRoot();
ensureBpffs();

const workloads = [
	{ ns: 'a-ingress', name: 'ingress', identity: Identity.FirstPod + 1 },
	{ ns: 'b-apache', name: 'apache', identity: Identity.FirstPod + 2 },
	{ ns: 'c-app', name: 'app', identity: Identity.FirstPod + 3 },
	{ ns: 'd-redis', name: 'redis', identity: Identity.FirstPod + 4 },
];
// The agent's table from rule ids back to the policy that made them.
const rules = new Map<number, string>([[1, 'd-redis/redis-allow-c-app']]);
const REDIS_PORT = 6379;

say('==> creating a lab node with four pod namespaces (veth pairs, /32 addresses)');
const topo = Topology.create(0, 210);
const pinRoot = `/sys/fs/bpf/weir-demo-${process.pid}`;
let dp: Datapath | undefined;

const cleanup = (): void => {
	try {
		dp?.destroy();
	} finally {
		removePinRoot(pinRoot);
		topo.destroy();
	}
};
process.on('SIGINT', () => {
	cleanup();
	process.exit(130);
});

const label = (ip: string): string => {
	const i = topo.pods.findIndex((p) => p.ip === ip);
	return i < 0 ? ip : `${workloads[i]!.ns}/${workloads[i]!.name}`;
};
const protoName = (p: number): string => ({ 6: 'TCP', 17: 'UDP', 1: 'ICMP', 132: 'SCTP' })[p] ?? String(p);
const flowLine = (e: DatapathEvent): string => {
	const policy =
		e.verdict === 'DROPPED'
			? `isolated by ${[...rules.values()].join(', ')}; no rule admits ${label(e.src)}`
			: e.ruleId
				? `allowed by ${rules.get(e.ruleId) ?? `rule ${e.ruleId}`}`
				: `allowed (${e.match})`;
	return (
		`${e.verdict.padEnd(9)} ${e.direction.padEnd(7)} ${label(e.src)}:${e.sport} -> ${label(e.dst)}:${e.dport} ${protoName(e.protocol)}` +
		`${e.reason ? ` reason=${e.reasonName}` : ''}  ${policy}`
	);
};

try {
	const pods: Pod[] = workloads.map((w, i) => topo.addPod(w.name, `10.210.0.${10 + i}`));
	say('==> loading the datapath and attaching it to every pod veth');
	dp = await Datapath.open({ pinRoot });
	pods.forEach((p, i) => {
		dp!.setEndpoint(p.ip, { epId: i + 1, identity: workloads[i]!.identity, ifindex: p.hostIfindex, flags: 0 });
		dp!.setIpcache(`${p.ip}/32`, workloads[i]!.identity);
		dp!.attach(p.hostIfindex, { netns: `/run/netns/${topo.nodeNs}` });
	});
	const flows: DatapathEvent[] = [];
	dp.subscribe((e) => {
		if (e.type === 'sock-drop') return; // no socket load balancer in this lab
		flows.push(e);
		if (keep) say(`flow: ${flowLine(e)}`);
	});
	const [, apache, app, redis] = pods as [Pod, Pod, Pod, Pod];
	await topo.serve(redis, REDIS_PORT);

	const matrix = (title: string): void => {
		say(`\n${title}`);
		for (const [who, pod] of [
			['c-app/app', app],
			['b-apache/apache', apache],
		] as const) {
			const ok = topo.probe(pod, 'tcp', redis.ip, REDIS_PORT, 1000);
			say(`  ${who.padEnd(16)} -> d-redis/redis:${REDIS_PORT}  ${ok ? 'connected' : 'REFUSED (dropped)'}`);
		}
	};
	matrix('before any policy:');

	say(`\n==> applying NetworkPolicy d-redis/redis-allow-c-app: redis admits only c-app on TCP ${REDIS_PORT}`);
	const r = topo.pods.indexOf(redis);
	dp.setEndpoint(redis.ip, { epId: r + 1, identity: workloads[r]!.identity, ifindex: redis.hostIfindex, flags: EndpointFlags.IngressIsolated });
	allowRule(dp, { epId: r + 1, identity: workloads[2]!.identity, direction: Dir.Ingress, protocol: IPPROTO.TCP, port: REDIS_PORT, ruleId: 1 });
	flows.length = 0;
	matrix('with the policy:');

	await new Promise((res) => setTimeout(res, 300));
	say('\nflows at redis since the policy (from the ring buffer):');
	for (const e of flows.filter((f) => f.dst === redis.ip)) say(`  ${flowLine(e)}`);
	const m = dp.readMetrics();
	say('\ncounters:');
	for (const s of m.samples) say(`  ${s.reasonName.padEnd(14)} ${s.direction.padEnd(7)} ${s.packets} packets`);

	if (keep) {
		say('\nthe lab keeps running; flows are printed as they happen. Ctrl-C removes it.');
		say(`  try: ip netns exec ${apache.netns} ping -c1 ${redis.ip}`);
		await new Promise(() => undefined);
	}
} finally {
	if (!keep) {
		cleanup();
		say('\n==> lab removed (namespaces, veths, links, pins)');
	}
}
