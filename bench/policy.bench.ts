// Policy benchmark: prints figures, never asserts.
//   node dist/bench/policy.bench.js      (root; part of scripts/bench.sh)
//
// 1. Full compile of 1 000 pods x 500 NetworkPolicies (pure compiler), and the first
//    apply of its result to real pinned maps.
// 2. Change to datapath (bench/api-agent.ts): a real kube-apiserver (local cluster,
//    control-plane mode) and a real weir-agent holding the same 1 000 pods and 500
//    policies; 100 times, one policy's port is patched through the API and the time
//    until the new entry is in the pinned policy map is measured (p50/p99).
// 3. The agent's resident memory at that scale.
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { Datapath, removePinRoot } from '../src/kernel/datapath.js';
import { IPPROTO, ipcacheKey, policyKeys } from '../src/kernel/codecs.js';
import { Dir } from '../src/kernel/layout.js';
import { native } from '../src/kernel/addon.js';
import { IdentityAllocator } from '../src/policy/identity.js';
import { RuleIdAllocator, compile } from '../src/policy/compiler.js';
import { NamespaceInfo, NetworkPolicy, PodInfo } from '../src/policy/model.js';
import { MapReconciler, toTrie } from '../src/policy/reconcile.js';
import { ensureBpffs, requireRoot, testPinRoot } from '../test/helpers/bpf.js';
import { typedPolicy as typed } from '../test/helpers/policy-lab.js';
import { ApiAgentLab, inFlight } from './api-agent.js';

const PODS = 1000;
const POLICIES = 500;
const NAMESPACES = 20;
const LOCAL = 100; // pods on the measured node
const CHANGES = 100;
const NODE = 'bench-node';

interface World {
	namespaces: NamespaceInfo[];
	pods: PodInfo[];
	policies: NetworkPolicy[];
}

function world(): World {
	const namespaces = Array.from({ length: NAMESPACES }, (_, i) => ({ name: `ns${i}`, labels: { team: `t${i % 5}`, 'kubernetes.io/metadata.name': `ns${i}` } }));
	const pods: PodInfo[] = Array.from({ length: PODS }, (_, i) => ({
		namespace: `ns${i % NAMESPACES}`,
		name: `pod${i}`,
		labels: { app: `app${i % 50}`, tier: ['web', 'api', 'db'][i % 3]!, version: `v${i % 2}` },
		ips: [`10.${100 + (i >> 8)}.${i & 255}.1`],
		nodeName: i < LOCAL ? NODE : `other${i % 4}`,
		ports: [{ name: 'http', containerPort: 8080 }],
	}));
	const policies: NetworkPolicy[] = Array.from({ length: POLICIES }, (_, i) => ({
		metadata: { namespace: `ns${i % NAMESPACES}`, name: `pol${i}` },
		spec: {
			podSelector: { matchLabels: { app: `app${i % 50}` } },
			policyTypes: i % 4 === 0 ? ['Ingress', 'Egress'] : ['Ingress'],
			ingress: [
				{ from: [{ podSelector: { matchLabels: { tier: ['web', 'api', 'db'][i % 3]! } } }], ports: [{ protocol: 'TCP', port: 1000 + i }] },
				{
					from: [
						{
							namespaceSelector: { matchLabels: { team: `t${i % 5}` } },
							podSelector: { matchExpressions: [{ key: 'version', operator: 'In', values: ['v1'] }] },
						},
					],
					ports: [{ port: 'http' }],
				},
				{ from: [{ ipBlock: { cidr: `172.${16 + (i % 16)}.0.0/16`, except: [`172.${16 + (i % 16)}.${i % 256}.0/24`] } }] },
			],
			...(i % 4 === 0
				? {
						egress: [
							{
								to: [{ namespaceSelector: {} }],
								ports: [
									{ protocol: 'UDP', port: 53 },
									{ protocol: 'TCP', port: 8000, endPort: 8100 },
								],
							},
						],
					}
				: {}),
		},
	}));
	return { namespaces, pods, policies };
}

function pct(xs: number[], p: number): number {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function compileBench(w: World): Promise<void> {
	const endpointIds = new Map(w.pods.filter((p) => p.nodeName === NODE).map((p, i) => [`${p.namespace}/${p.name}`, i + 1]));
	const input = { ...w, nodes: [{ name: NODE, ips: ['198.18.9.1'] }], localNode: NODE, endpointIds, rules: new RuleIdAllocator() };
	// Warm the JIT once, then measure fresh compiles.
	compile({ ...input, identities: new IdentityAllocator() });
	const times: number[] = [];
	let last: ReturnType<typeof compile> | undefined;
	for (let i = 0; i < 5; i++) {
		const t0 = performance.now();
		last = compile({ ...input, identities: new IdentityAllocator() });
		times.push(performance.now() - t0);
	}
	const t1 = performance.now();
	const trie = toTrie(last!.entries);
	const trieMs = performance.now() - t1;
	const pinRoot = testPinRoot('bench-policy');
	const dp = await Datapath.open({ pinRoot });
	try {
		const endpoints = new Map([...last!.endpoints].map(([ip, e]) => [ip, { epId: e.epId, identity: e.identity, ifindex: 1, flags: e.flags }]));
		const t2 = performance.now();
		new MapReconciler(dp).apply({ ipcache: last!.ipcache, endpoints, policy: trie });
		const applyMs = performance.now() - t2;
		console.log(`## full compile: ${PODS} pods x ${POLICIES} policies (${LOCAL} pods local)`);
		console.log(`compile (pure):      median ${pct(times, 50).toFixed(1)} ms over 5 runs (target <= 1000 ms)`);
		console.log(
			`result:              ${last!.entries.length} policy entries -> ${trie.size} trie keys (${trieMs.toFixed(1)} ms), ${last!.ipcache.size} ipcache prefixes`,
		);
		console.log(`first apply to maps: ${applyMs.toFixed(1)} ms`);
	} finally {
		dp.destroy();
		removePinRoot(pinRoot);
	}
}

async function changeBench(w: World): Promise<void> {
	const lab = await ApiAgentLab.start('wbench', 'bench-agent');
	try {
		const core = lab.kc.makeApiClient(k8s.CoreV1Api);
		const net = lab.kc.makeApiClient(k8s.NetworkingV1Api);
		const t0 = performance.now();
		await core.createNode({ body: { metadata: { name: NODE }, status: { addresses: [{ type: 'InternalIP', address: '198.18.9.1' }] } } });
		for (const n of w.namespaces) {
			await core.createNamespace({ body: { metadata: { name: n.name, labels: n.labels } } });
			await core.createNamespacedServiceAccount({ namespace: n.name, body: { metadata: { name: 'default' } } });
		}
		await inFlight(w.pods, 20, async (p) => {
			await core.createNamespacedPod({
				namespace: p.namespace,
				body: {
					metadata: { name: p.name, labels: p.labels },
					spec: {
						nodeName: p.nodeName!,
						automountServiceAccountToken: false,
						containers: [{ name: 'c', image: 'weir.local/workload:1', ports: [{ name: 'http', containerPort: 8080 }] }],
					},
				},
			});
			await core.patchNamespacedPodStatus(
				{ name: p.name, namespace: p.namespace, body: { status: { phase: 'Running', podIP: p.ips[0], podIPs: [{ ip: p.ips[0]! }] } } },
				k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
			);
		});
		await inFlight(w.policies, 20, (p) => net.createNamespacedNetworkPolicy({ namespace: p.metadata!.namespace!, body: typed(p) }));
		const loadS = (performance.now() - t0) / 1000;

		const locals = w.pods.filter((p) => p.nodeName === NODE);
		// The agent runs as the DaemonSet runs it (bounded V8 heap), as a host process: no socket load balancer.
		const readyS = await lab.startAgent({
			node: NODE,
			endpoints: locals.map((p, i) => ({ namespace: p.namespace, pod: p.name, ip: p.ips[0]!, epId: i + 1, ifindex: 1000 + i })),
		});

		// The measured policy: pol0 selects app0 pods in ns0; local pod0 is one of them.
		const policyMap = native().openPinnedMap(join(lab.pinRoot, 'weir_policy'));
		const ipcache = native().openPinnedMap(join(lab.pinRoot, 'weir_ipcache'));
		const idOf = (ip: string): number => {
			const v = ipcache.lookup(ipcacheKey(`${ip}/32`));
			if (!v) throw new Error(`${ip} not in ipcache`);
			return v.readUInt32LE(0);
		};
		// pol0's first rule admits tier=web (pod0 is app0/web) from its namespace.
		const peer = w.pods.find((p) => p.namespace === 'ns0' && p.labels['tier'] === 'web' && p.name !== 'pod0')!;
		const identity = idOf(peer.ips[0]!);
		const pol0 = w.policies[0]!;
		const latencies: number[] = [];
		for (let i = 0; i < CHANGES; i++) {
			const port = 20000 + i;
			const [key] = policyKeys({ epId: 1, identity, direction: Dir.Ingress, protocol: IPPROTO.TCP, port, ruleId: 1 });
			const body = typed(JSON.parse(JSON.stringify(pol0)) as NetworkPolicy);
			body.spec!.ingress![0]!.ports = [{ protocol: 'TCP', port }];
			const start = performance.now();
			await net.replaceNamespacedNetworkPolicy({ name: 'pol0', namespace: 'ns0', body: { ...body, metadata: { name: 'pol0', namespace: 'ns0' } } });
			for (;;) {
				const v = policyMap.lookup(key!);
				if (v && v.readUInt32LE(0) !== 0) break;
				if (performance.now() - start > 10_000) {
					const mine = policyMap
						.keys()
						.filter((k) => k.readUInt32LE(4) === 1)
						.map((k) => `${k.readUInt32LE(0)}:${k.readUInt32LE(8)}:${k[12]}:${k[13]}:${k.readUInt16BE(14)}`);
					throw new Error(
						`change ${i} not applied within 10 s; looking for ${key!.toString('hex')} (identity ${identity}); ep 1 has ${mine.length} entries: ${mine.slice(0, 30).join(' ')}`,
					);
				}
				await new Promise((r) => setTimeout(r, 1));
			}
			latencies.push(performance.now() - start);
		}
		const rssMb = lab.agentRssMb();
		console.log(
			`\n## change to datapath: real kube-apiserver, real weir-agent, ${PODS} pods x ${POLICIES} policies (objects created in ${loadS.toFixed(1)} s; agent ready ${readyS.toFixed(2)} s after start)`,
		);
		console.log(
			`API write -> entry in the pinned policy map, ${CHANGES} changes: p50 ${pct(latencies, 50).toFixed(1)} ms, p99 ${pct(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms (target p99 <= 100 ms)`,
		);
		console.log(`agent RSS at that scale: ${rssMb.toFixed(0)} MB (target <= 200 MB)`);
		policyMap.close();
		ipcache.close();
	} finally {
		await lab.destroy();
	}
}

requireRoot();
ensureBpffs();
console.log(`# Weir policy benchmark (${new Date().toISOString()})`);
const w = world();
await compileBench(w);
await changeBench(w);
