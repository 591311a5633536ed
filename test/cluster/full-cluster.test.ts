// The full local cluster with Debian's reference CNI (bridge + host-local): a
// Deployment of the test workload spread over both nodes and a ClusterIP Service;
// pod-to-pod across nodes, pod-to-Service by DNS name, kubectl exec and logs. Then
// stop and prove nothing the cluster made is left on the host.
// (Debian's busybox-static 1.35 wget segfaults with -T: time out with `timeout` instead.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, clusterStatus, type Cluster } from '../../hack/cluster/cluster.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { hostTraces } from './host-snapshot.js';

const NAME = 'tfull';

function workload(image: string): object {
	const labels = { app: 'echo' };
	return {
		apiVersion: 'v1',
		kind: 'List',
		items: [
			{
				apiVersion: 'apps/v1',
				kind: 'Deployment',
				metadata: { name: 'echo', namespace: 'default' },
				spec: {
					replicas: 2,
					selector: { matchLabels: labels },
					template: {
						metadata: { labels },
						spec: {
							affinity: {
								podAntiAffinity: {
									requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: labels }, topologyKey: 'kubernetes.io/hostname' }],
								},
							},
							terminationGracePeriodSeconds: 1,
							containers: [
								{
									name: 'echo',
									image,
									imagePullPolicy: 'Never',
									env: [
										{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
										{ name: 'VERSION', value: 'v1' },
									],
									ports: [
										{ name: 'http', containerPort: 8080 },
										{ name: 'tcp-echo', containerPort: 9000 },
										{ name: 'redis', containerPort: 6379 },
									],
									readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 2 },
								},
							],
						},
					},
				},
			},
			{
				apiVersion: 'v1',
				kind: 'Service',
				metadata: { name: 'echo', namespace: 'default' },
				spec: {
					selector: labels,
					ports: [
						{ name: 'http', port: 80, targetPort: 8080 },
						{ name: 'tcp-echo', port: 9000, targetPort: 9000 },
					],
				},
			},
		],
	};
}

interface PodInfo {
	name: string;
	node: string;
	ip: string;
}

async function echoPods(c: Cluster): Promise<PodInfo[]> {
	const r = await c.kubectl(['get', 'pods', '-l', 'app=echo', '-o', 'json']);
	const list = JSON.parse(r.stdout) as {
		items: { metadata: { name: string }; spec: { nodeName: string }; status: { podIP: string } }[];
	};
	return list.items.map((p) => ({ name: p.metadata.name, node: p.spec.nodeName, ip: p.status.podIP }));
}

test('full cluster: two nodes, reference CNI, Service, DNS, exec, logs; stop leaves nothing', { timeout: 3_600_000 }, async (t) => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	const hostBefore = await hostTraces(NAME);
	const t0 = Date.now();
	const c = await startCluster({ name: NAME, mode: 'cluster', cni: 'reference', log: (m) => t.diagnostic(m) });
	t.diagnostic(`cluster start: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
	const pids = clusterStatus(NAME).processes.map((p) => p.pid);
	try {
		assert.equal(c.nodes.length, 2);
		assert.notEqual(c.nodes[0]!.podCIDR, c.nodes[1]!.podCIDR);
		const nodes = await c.kubectl(['get', 'nodes', '-o', 'wide']);
		t.diagnostic(nodes.stdout);

		await c.kubectl(['apply', '-f', '-'], { input: JSON.stringify(workload(c.images.workload)) });
		await c.kubectl(['rollout', 'status', 'deployment/echo', '--timeout=180s'], { timeoutMs: 200_000 });
		const pods = await echoPods(c);
		assert.equal(pods.length, 2);
		const [a, b] = pods as [PodInfo, PodInfo];
		assert.notEqual(a.node, b.node, 'anti-affinity spreads the replicas over both nodes');
		t.diagnostic(`pods: ${JSON.stringify(pods)}`);

		// Pod to pod across nodes, by IP: HTTP and the TCP echo.
		const http = await c.kubectl(['exec', a.name, '--', 'timeout', '10', 'wget', '-qO-', `http://${b.ip}:8080/`]);
		assert.match(http.stdout, new RegExp(`pod=${b.name} version=v1 status=200`));
		assert.match(http.stdout, new RegExp(`client=${a.ip.replaceAll('.', '\\.')}\\b`), 'no NAT between pods');
		const tcp = await c.kubectl(['exec', a.name, '--', 'sh', '-c', `echo ping-${a.name} | nc -w 3 ${b.ip} 9000`]);
		assert.equal(tcp.stdout.trim(), `ping-${a.name}`);
		const redis = await c.kubectl(['exec', a.name, '--', 'sh', '-c', `printf 'PING\\r\\nSET k ${a.name}\\r\\nGET k\\r\\nQUIT\\r\\n' | nc -w 3 ${b.ip} 6379`]);
		assert.equal(redis.stdout.replaceAll('\r', ''), `+PONG\n+OK\n$${a.name.length}\n${a.name}\n+OK\n`);

		// Pod to Service by DNS name (CoreDNS + kube-proxy); both backends answer eventually.
		const seen = new Set<string>();
		for (let i = 0; i < 20 && seen.size < 2; i++) {
			const r = await c.kubectl(['exec', b.name, '--', 'timeout', '10', 'wget', '-qO-', 'http://echo.default.svc.cluster.local/']);
			const m = /pod=(\S+)/.exec(r.stdout);
			assert.ok(m, `unexpected answer: ${r.stdout}`);
			seen.add(m[1]!);
		}
		assert.deepEqual([...seen].sort(), [a.name, b.name].sort());
		const short = await c.kubectl(['exec', a.name, '--', 'timeout', '10', 'wget', '-qO-', 'http://echo/']);
		assert.match(short.stdout, /status=200/);

		// CoreDNS serves the cluster domain only: no query reaches the host's resolvers.
		const ext = await c.kubectl(['exec', a.name, '--', 'nslookup', 'example.com'], { allowFail: true });
		assert.notEqual(ext.code, 0, `example.com must not resolve: ${ext.stdout}`);

		// kubectl logs: the workload's start line and the requests it served.
		const logs = await c.kubectl(['logs', b.name]);
		assert.match(logs.stdout + logs.stderr, new RegExp(`workload: pod=${b.name}`));
		assert.match(logs.stdout, /url:\//);
	} finally {
		const rep = await c.stop();
		assert.deepEqual(rep.left, []);
	}
	assert.deepEqual(await leftovers(NAME, pids), []);
	assert.deepEqual(await hostTraces(NAME), hostBefore, 'the host looks as before');
});
