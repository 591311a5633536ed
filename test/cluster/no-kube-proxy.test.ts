// The local cluster without kube-proxy (`up --no-kube-proxy`, `kubeProxy: false`): the
// mode a socket-level load balancer (Weir's kube-proxy replacement) is tested in. With
// the reference CNI: no kube-proxy process in the cluster, no KUBE-SERVICES chain (nor a
// kube-proxy nftables table) in any node, while the nodes are Ready, CoreDNS is ready
// (it reaches the API server at its own address, not the `kubernetes` ClusterIP), pods
// reach each other across nodes, and a Service's ClusterIP answers nobody, since nothing
// translates it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { startCluster, clusterStatus, type Cluster } from '../../hack/cluster/cluster.js';
import { cgroupV2Dir, leftovers } from '../../hack/cluster/resources.js';

const NAME = 'tnokp';

/** PIDs of every process in the cluster's cgroup tree (what the harness started, and their children). */
function clusterPids(name: string): number[] {
	const pids: number[] = [];
	const walk = (dir: string): void => {
		for (const p of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) pids.push(Number(p));
		for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name));
	};
	walk(cgroupV2Dir(name));
	return pids;
}

function argv0(pid: number): string {
	try {
		return basename(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '');
	} catch {
		return ''; // exited meanwhile
	}
}

function pods(c: Cluster): object {
	const pod = (name: string, node: string): object => ({
		apiVersion: 'v1',
		kind: 'Pod',
		metadata: { name, namespace: 'default', labels: { app: 'nokp' } },
		spec: {
			nodeName: node,
			terminationGracePeriodSeconds: 1,
			containers: [{ name: 'w', image: c.images.workload, imagePullPolicy: 'Never', readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 2 } }],
		},
	});
	return {
		apiVersion: 'v1',
		kind: 'List',
		items: [
			pod('a', 'n1'),
			pod('b', 'n2'),
			{
				apiVersion: 'v1',
				kind: 'Service',
				metadata: { name: 'nokp', namespace: 'default' },
				spec: { selector: { app: 'nokp' }, ports: [{ port: 80, targetPort: 8080 }] },
			},
		],
	};
}

test('cluster without kube-proxy: no kube-proxy process, no KUBE-SERVICES chain, otherwise healthy', { timeout: 600_000 }, async (t) => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	const c = await startCluster({ name: NAME, kubeProxy: false, log: (m) => t.diagnostic(m) });
	const pids = clusterStatus(NAME).processes.map((p) => p.pid);
	try {
		assert.equal(c.kubeProxy, false);
		assert.deepEqual(c.apiServerAddress, { host: c.nodes[0]!.nodeIP, port: 6443 });
		assert.deepEqual(
			clusterStatus(NAME).processes.filter((p) => p.name.startsWith('kube-proxy')),
			[],
			'the harness started no kube-proxy',
		);
		const running = clusterPids(NAME).map(argv0);
		assert.ok(running.includes('kubelet'), `the cluster's processes are visible: ${[...new Set(running)].join(' ')}`);
		assert.ok(!running.includes('kube-proxy'), `no kube-proxy process in the cluster: ${[...new Set(running)].join(' ')}`);

		for (const n of c.nodes) {
			const ipt = await c.nodeExec(n.name, ['iptables-save']);
			// kubelet's own canary chain: the rules read are this node's, and kubelet's are there.
			assert.match(ipt.stdout, /KUBE-KUBELET-CANARY/, `${n.name}: iptables-save shows kubelet's chains`);
			assert.doesNotMatch(ipt.stdout, /KUBE-SERVICES|KUBE-NODEPORTS|KUBE-SVC-/, `${n.name}: no kube-proxy chain`);
			const nft = await c.nodeExec(n.name, ['nft', 'list', 'tables']);
			assert.doesNotMatch(nft.stdout, /kube-proxy/, `${n.name}: no kube-proxy nftables table`);
		}

		const nodes = await c.kubectl(['get', 'nodes', '-o', 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}']);
		assert.deepEqual(nodes.stdout.trim().split(' '), ['True', 'True'], 'both nodes Ready');
		const dns = await c.kubectl([
			'-n',
			'kube-system',
			'get',
			'pods',
			'-l',
			'k8s-app=kube-dns',
			'-o',
			'jsonpath={.items[0].status.podIP} {.items[0].status.containerStatuses[0].ready}',
		]);
		const [dnsIP, dnsReady] = dns.stdout.trim().split(' ');
		assert.equal(dnsReady, 'true', 'CoreDNS ready: it synced with the API server without the kubernetes ClusterIP');

		await c.kubectl(['apply', '-f', '-'], { input: JSON.stringify(pods(c)) });
		await c.kubectl(['wait', '--for=condition=Ready', 'pod/a', 'pod/b', '--timeout=120s'], { timeoutMs: 130_000 });
		const ip = async (p: string): Promise<string> => (await c.kubectl(['get', 'pod', p, '-o', 'jsonpath={.status.podIP}'])).stdout.trim();
		const [ipA, ipB] = [await ip('a'), await ip('b')];
		const http = await c.kubectl(['exec', 'a', '--', 'timeout', '10', 'wget', '-qO-', `http://${ipB}:8080/`]);
		assert.match(http.stdout, /pod=b .*status=200/, 'pod to pod across nodes');
		assert.match(http.stdout, new RegExp(`client=${ipA.replaceAll('.', '\\.')}\\b`));

		// CoreDNS answers for the Service (asked at its pod IP: the DNS ClusterIP is not translated either).
		const svcIP = (await c.kubectl(['get', 'svc', 'nokp', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
		const lookup = await c.kubectl(['exec', 'a', '--', 'nslookup', 'nokp.default.svc.cluster.local', dnsIP!]);
		assert.match(lookup.stdout, new RegExp(svcIP.replaceAll('.', '\\.')), `CoreDNS resolves the Service: ${lookup.stdout}`);
		const eps = await c.kubectl(['get', 'endpointslices', '-l', 'kubernetes.io/service-name=nokp', '-o', 'jsonpath={.items[*].endpoints[*].addresses[0]}']);
		assert.deepEqual(eps.stdout.trim().split(' ').sort(), [ipA, ipB].sort(), 'the Service has both pods as endpoints');
		const viaVip = await c.kubectl(['exec', 'a', '--', 'timeout', '5', 'wget', '-qO-', `http://${svcIP}/`], { allowFail: true });
		assert.notEqual(viaVip.code, 0, `the ClusterIP must not answer without kube-proxy: ${viaVip.stdout}`);
	} finally {
		const rep = await c.stop();
		assert.deepEqual(rep.left, []);
	}
	assert.deepEqual(await leftovers(NAME, pids), []);
});
