// control-plane mode: etcd + kube-apiserver on the host's loopback, and an informer
// from @kubernetes/client-node seeing a NetworkPolicy created, updated and deleted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { startCluster } from '../../hack/cluster/cluster.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { waitFor } from '../../hack/cluster/exec.js';
import { hostTraces } from './host-snapshot.js';

const NAME = 'tcp';

test('control-plane mode serves informers (NetworkPolicy add/update/delete)', { timeout: 3_600_000 }, async (t) => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	const hostBefore = await hostTraces(NAME);
	const t0 = Date.now();
	const c = await startCluster({ name: NAME, mode: 'control-plane', log: (m) => t.diagnostic(m) });
	t.diagnostic(`control-plane start: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
	const pids: number[] = [];
	try {
		const kc = new k8s.KubeConfig();
		kc.loadFromFile(c.kubeconfig);
		const net = kc.makeApiClient(k8s.NetworkingV1Api);
		const ns = 'default';
		const events: string[] = [];
		const informer = k8s.makeInformer(kc, `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`, () =>
			net.listNamespacedNetworkPolicy({ namespace: ns }),
		);
		const record =
			(kind: string) =>
			(obj: k8s.V1NetworkPolicy): void => {
				events.push(`${kind} ${obj.metadata?.name} ${JSON.stringify(obj.spec?.podSelector?.matchLabels ?? {})}`);
			};
		informer.on('add', record('add'));
		informer.on('update', record('update'));
		informer.on('delete', record('delete'));
		let stopping = false;
		informer.on('error', (err: unknown) => {
			if (!stopping) t.diagnostic(`informer error: ${String(err)}`);
		});
		await informer.start();
		try {
			const np: k8s.V1NetworkPolicy = {
				metadata: { name: 'deny-redis', namespace: ns },
				spec: { podSelector: { matchLabels: { app: 'redis' } }, policyTypes: ['Ingress'] },
			};
			await net.createNamespacedNetworkPolicy({ namespace: ns, body: np });
			await waitFor('add event', 10_000, async () => (events.some((e) => e.startsWith('add deny-redis')) ? true : undefined));

			const cur = await net.readNamespacedNetworkPolicy({ name: 'deny-redis', namespace: ns });
			cur.spec = { ...cur.spec!, podSelector: { matchLabels: { app: 'redis', tier: 'db' } } };
			await net.replaceNamespacedNetworkPolicy({ name: 'deny-redis', namespace: ns, body: cur });
			await waitFor('update event', 10_000, async () =>
				events.some((e) => e.startsWith('update deny-redis') && e.includes('"tier":"db"')) ? true : undefined,
			);

			await net.deleteNamespacedNetworkPolicy({ name: 'deny-redis', namespace: ns });
			await waitFor('delete event', 10_000, async () => (events.some((e) => e.startsWith('delete deny-redis')) ? true : undefined));
			assert.deepEqual(
				events.map((e) => e.split(' ')[0]),
				['add', 'update', 'delete'],
			);
		} finally {
			stopping = true;
			await informer.stop();
		}
		const { clusterStatus } = await import('../../hack/cluster/cluster.js');
		pids.push(...clusterStatus(NAME).processes.map((p) => p.pid));
	} finally {
		const rep = await c.stop();
		assert.deepEqual(rep.left, []);
	}
	assert.deepEqual(await leftovers(NAME, pids), []);
	assert.deepEqual(await hostTraces(NAME), hostBefore, 'the host looks as before');
});
