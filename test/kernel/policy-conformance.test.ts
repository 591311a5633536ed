// NetworkPolicy conformance by truth table on the real datapath: for every generated
// case, the compiler's output is reconciled into the pinned maps (incrementally, from
// the previous case), and every (client, server, protocol, port) probe between pod
// namespaces and a host outside the cluster is compared with the reference evaluator.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { EndpointInfo } from '../../src/kernel/codecs.js';
import { Identity } from '../../src/kernel/layout.js';
import { IdentityAllocator } from '../../src/policy/identity.js';
import { RuleIdAllocator, compile } from '../../src/policy/compiler.js';
import { NetworkPolicy, PodInfo } from '../../src/policy/model.js';
import { MapReconciler, toTrie } from '../../src/policy/reconcile.js';
import { TestDatapath, requireRoot } from '../helpers/bpf.js';
import { NODE_IP, Pod, Prober, Topology } from '../../hack/lab/topology.js';
import { EXTERNAL_IP, NAMESPACES, PODS, PROBES, podIp, SERVED_PORTS, generateCases, worldFor } from '../helpers/policy-cases.js';
import { RefEnd, RefPod, referenceAllows } from '../helpers/policy-reference.js';

const NODE = 'lab-node';

let topo: Topology;
let t: TestDatapath;
const probers = new Map<string, Prober>();

interface End extends RefEnd {
	label: string;
	lab: Pod;
}
const ends: End[] = [];
let refPods: RefPod[] = [];

before(async () => {
	requireRoot();
	topo = Topology.create(0, 230);
	t = await TestDatapath.open('conformance');
	refPods = PODS.map((p, i) => ({ ...p, ip: podIp(i) }));
	for (const p of refPods) {
		const lab = topo.addPod(`${p.namespace}-${p.name}`, p.ip);
		ends.push({ ip: p.ip, pod: p, label: `${p.namespace}/${p.name}`, lab });
	}
	const ext = topo.addPod('external', EXTERNAL_IP);
	ends.push({ ip: EXTERNAL_IP, label: `external ${EXTERNAL_IP}`, lab: ext });
	for (const e of ends) {
		if (e.pod) t.dp.attach(e.lab.hostIfindex, { netns: `/run/netns/${topo.nodeNs}` });
		await topo.serve(e.lab, SERVED_PORTS);
		probers.set(e.label, topo.prober(e.lab));
	}
});

after(() => {
	for (const p of probers.values()) p.close();
	try {
		t?.destroy();
	} finally {
		topo?.destroy();
	}
});

test('every generated NetworkPolicy case matches the reference evaluator on the real datapath', async () => {
	const cases = generateCases();
	assert.ok(cases.length >= 60);
	const pods: PodInfo[] = refPods.map((p) => ({ ...p, ips: [p.ip], nodeName: NODE }));
	const endpointIds = new Map(refPods.map((p, i) => [`${p.namespace}/${p.name}`, i + 1]));
	const ifindexOf = new Map(ends.map((e) => [e.ip, e.lab.hostIfindex]));
	const identities = new IdentityAllocator();
	const rules = new RuleIdAllocator();
	const reconciler = new MapReconciler(t.dp);
	const mismatches: string[] = [];
	let probes = 0;

	for (const c of cases) {
		const compiled = compile({
			pods,
			namespaces: NAMESPACES,
			policies: c.policies as NetworkPolicy[],
			nodes: [{ name: NODE, ips: [NODE_IP] }],
			localNode: NODE,
			endpointIds,
			identities,
			rules,
		});
		assert.deepEqual(compiled.problems, [], c.name);
		const endpoints = new Map<string, EndpointInfo>();
		for (const [ip, ep] of compiled.endpoints) {
			endpoints.set(ip, { epId: ep.epId, identity: ep.identity, ifindex: ifindexOf.get(ip)!, flags: ep.flags });
		}
		reconciler.apply({ ipcache: compiled.ipcache, endpoints, policy: toTrie(compiled.entries) });
		// Every probe must be a new connection. A UDP prober may get the same ephemeral
		// port again, and a policy change does not cut flows already admitted (by
		// design, as in Cilium), so the previous case's conntrack entries go.
		t.dp.gcConntrack(process.hrtime.bigint() + 10n ** 15n);

		const world = worldFor(refPods, c.policies);
		const jobs: Array<Promise<void>> = [];
		for (const src of ends) {
			for (const dst of ends) {
				if (src === dst || (!src.pod && !dst.pod)) continue;
				for (const pr of PROBES) {
					const want = referenceAllows(world, src, dst, pr.proto, pr.port);
					const prober = probers.get(src.label)!;
					const proto = pr.proto === 'TCP' ? 'tcp' : 'udp';
					probes++;
					jobs.push(
						(async () => {
							let got = await prober.probe(proto, dst.ip, pr.port, 400);
							// A slow echo is not a drop: only an expected success is retried, more patiently.
							if (want && !got) got = await prober.probe(proto, dst.ip, pr.port, 2000);
							if (got !== want) {
								mismatches.push(
									`case '${c.name}': ${src.label} -> ${dst.label} ${pr.proto}/${pr.port}: datapath ${got ? 'allowed' : 'denied'}, reference ${want ? 'allows' : 'denies'}`,
								);
							}
						})(),
					);
				}
			}
		}
		await Promise.all(jobs);
		if (mismatches.length > 20) break;
	}
	assert.deepEqual(mismatches, [], `${mismatches.length} mismatches over ${probes} probes`);
	assert.ok(probes >= 60 * 100, `${probes} probes`);
	// The ipcache holds exactly what the last case needs: stale prefixes were removed.
	const last = t.dp.ipcacheEntries();
	assert.ok(last.every((e) => e.identity !== Identity.World));
});
