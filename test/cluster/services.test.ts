// ClusterIP Services through Weir's socket load balancer, on the local cluster with Weir
// installed from deploy/, once beside kube-proxy and once with no kube-proxy at all.
// A pod in namespace x under an egress default-deny that allows DNS to kube-system and
// namespace y resolves names, reaches s.y.svc.cluster.local and not s.z; the flows name
// the backend pods and the Services addressed; a Service with no ready backend refuses
// at once; a Service deleted and recreated is translated to its new backends.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, clusterStatus, type Cluster } from '../../hack/cluster/cluster.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { waitFor } from '../../hack/cluster/exec.js';
import { forwardObservers } from '../../hack/demo/observer-forward.js';
import { scenarioManifests, type Workload } from '../../hack/demo/scenario.js';
import type { Flow } from '../../src/observe/flow.js';
import { assertNoKubeProxy, getByName, inPod, installWeir, podOf } from '../helpers/services-cluster.js';

const WORKLOADS: (nodes: string[]) => Workload[] = (nodes) => [
	{ namespace: 'x', name: 'client', node: nodes[0]! },
	{ namespace: 'y', name: 's', node: nodes[1]! },
	{ namespace: 'z', name: 's', node: nodes[1]! },
];

/** Egress default-deny in x, with DNS to kube-system and anything in namespace y. */
const EGRESS_POLICY = {
	apiVersion: 'networking.k8s.io/v1',
	kind: 'NetworkPolicy',
	metadata: { name: 'x-egress', namespace: 'x' },
	spec: {
		podSelector: {},
		policyTypes: ['Egress'],
		egress: [
			{
				to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } } }],
				ports: [
					{ protocol: 'UDP', port: 53 },
					{ protocol: 'TCP', port: 53 },
				],
			},
			{ to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'y' } } }] },
		],
	},
};

async function flows(url: string, q: string): Promise<Flow[]> {
	const r = await fetch(`${url}/v1/flows?${q}`);
	assert.equal(r.status, 200);
	return ((await r.json()) as { flows: Flow[] }).flows;
}

for (const kubeProxy of [true, false]) {
	describe(kubeProxy ? 'ClusterIP Services with kube-proxy beside Weir' : 'ClusterIP Services with no kube-proxy', { timeout: 900_000 }, () => {
		const name = kubeProxy ? 'wsvc' : 'wsvcnkp';
		let c: Cluster | undefined;
		let pids: number[] = [];
		after(async () => {
			if (!c) return;
			const rep = await c.stop();
			assert.deepEqual(rep.left, [], 'the cluster left nothing behind');
			assert.deepEqual(await leftovers(name, pids), []);
		});

		test('install, then DNS and Services under an egress policy; flows name the backend and the Service', async (t) => {
			assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
			c = await startCluster({ name, cni: 'none', kubeProxy, log: () => {} });
			pids = clusterStatus(name).processes.map((p) => p.pid);
			const k = c;
			if (!kubeProxy) await assertNoKubeProxy(k);
			await installWeir(k, (m) => t.diagnostic(m));
			await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(scenarioManifests(k.images.workload, WORKLOADS(k.nodes.map((n) => n.name)))) });
			const client = await podOf(k, 'x', 'client');
			const sy = await podOf(k, 'y', 's');
			const sz = await podOf(k, 'z', 's');
			await waitFor(
				'CoreDNS ready',
				180_000,
				async () =>
					(await k.kubectl(['-n', 'kube-system', 'get', 'endpointslices', '-o', 'jsonpath={.items[*].endpoints[*].conditions.ready}'])).stdout.includes('true')
						? true
						: undefined,
				2000,
			);

			// The EndpointSlice of a pod that just turned Ready reaches the agent a moment later.
			const before = await waitFor(
				's.z reachable by name before the policy',
				60_000,
				async () => {
					const r = await inPod(k, 'x', client.pod, getByName('s.z.svc.cluster.local', 5));
					return r.code === 0 && r.out.includes('status=200') ? r : undefined;
				},
				1000,
			);
			assert.match(before.out, new RegExp(`pod=${sz.pod}`));
			await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(EGRESS_POLICY) });
			const y = await waitFor(
				's.y reachable by name under the policy',
				60_000,
				async () => {
					const r = await inPod(k, 'x', client.pod, getByName('s.y.svc.cluster.local', 5));
					return r.code === 0 && r.out.includes('status=200') ? r : undefined;
				},
				1000,
			);
			assert.match(y.out, new RegExp(`pod=${sy.pod}`), 'the backend in y answered');
			const dns = await inPod(k, 'x', client.pod, 'nslookup s.z.svc.cluster.local');
			assert.equal(dns.code, 0, `DNS (UDP 53 to kube-system through the kube-dns ClusterIP) works: ${dns.out}`);
			const z = await inPod(k, 'x', client.pod, getByName('s.z.svc.cluster.local', 4));
			assert.notEqual(z.code, 0, `s.z is refused by the egress policy: ${z.out}`);
			const direct = await inPod(k, 'x', client.pod, `timeout 5 wget -q -O - http://${sy.ip}:8080/`);
			assert.equal(direct.code, 0, 'a pod IP in y still works');

			// The forwarders live in the cluster's cgroup: stopping the cluster stops them.
			const fwd = await forwardObservers(k, kubeProxy ? 39962 : 39972);
			{
				const url = fwd.find((f) => f.node === k.nodes[0]!.name)!.url;
				const fl = await waitFor(
					'flows of the client with their Services',
					30_000,
					async () => {
						const all = await flows(url, 'namespace=x&limit=2000');
						const toY = all.find(
							(f) =>
								f.verdict === 'FORWARDED' && f.destination.pod === sy.pod && f.destination.service?.name === 's' && f.destination.service.namespace === 'y',
						);
						const toZ = all.find((f) => f.verdict === 'DROPPED' && f.destination.pod === sz.pod);
						const toDns = all.find((f) => f.protocol === 'UDP' && f.destination.namespace === 'kube-system' && f.destination.service?.name === 'kube-dns');
						return toY && toZ && toDns ? { toY, toZ, toDns } : undefined;
					},
					1000,
				);
				assert.equal(fl.toY.destination.port, 8080, 'the backend port, not the Service port');
				assert.equal(fl.toY.destination.ip, sy.ip, 'the backend pod, not the ClusterIP');
				assert.deepEqual(
					fl.toZ.destination.service && { ns: fl.toZ.destination.service.namespace, name: fl.toZ.destination.service.name },
					{ ns: 'z', name: 's' },
					'the drop names the Service addressed',
				);
				assert.equal(fl.toZ.dropReason, 'POLICY_DENIED');
				assert.deepEqual(
					fl.toZ.isolatedBy?.map((p) => `${p.namespace}/${p.name}`),
					['x/x-egress'],
				);
				t.diagnostic(fl.toY.summary);
				t.diagnostic(fl.toZ.summary);
			}

			// No ready backend: refused at once. Then a Service recreated under the same name.
			await k.kubectl(['-n', 'y', 'scale', 'deployment/s', '--replicas=0']);
			const refused = await waitFor(
				's.y with no backend refused',
				60_000,
				async () => {
					const r = await inPod(k, 'x', client.pod, getByName('s.y.svc.cluster.local', 10));
					return r.code !== 0 && /refused/i.test(r.out) ? r : undefined;
				},
				1000,
			);
			t.diagnostic(refused.out);
			// The refusal is a flow at the client's node: the pod, the ClusterIP, the Service.
			{
				const url = fwd.find((f) => f.node === k.nodes[0]!.name)!.url;
				const drop = await waitFor(
					'the refusal as a flow',
					30_000,
					async () =>
						(await flows(url, 'verdict=DROPPED&namespace=x&limit=2000')).find(
							(f) => f.dropReason === 'NO_SERVICE_BACKEND' && f.source.pod === client.pod && f.destination.service?.name === 's',
						),
					1000,
				);
				assert.deepEqual(
					{ ns: drop.destination.service?.namespace, direction: drop.direction, source: drop.source.namespace, port: drop.destination.port },
					{ ns: 'y', direction: 'egress', source: 'x', port: drop.destination.service?.vipPort },
				);
				assert.equal(drop.destination.ip, drop.destination.service?.vip, 'the ClusterIP: no backend was chosen');
				assert.match(drop.dropReasonDesc ?? '', /^no ready backend for Service y\/s:/);
				t.diagnostic(drop.summary);
			}
			await k.kubectl(['-n', 'y', 'scale', 'deployment/s', '--replicas=1']);
			const sy2 = await podOf(k, 'y', 's');
			const back = await waitFor(
				's.y back with its new backend',
				60_000,
				async () => {
					const r = await inPod(k, 'x', client.pod, getByName('s.y.svc.cluster.local', 5));
					return r.code === 0 && r.out.includes(`pod=${sy2.pod}`) ? r : undefined;
				},
				1000,
			);
			assert.match(back.out, /status=200/);
		});
	});
}
