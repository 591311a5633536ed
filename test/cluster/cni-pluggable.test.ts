// The cluster's CNI is pluggable: a conflist template plus plugin binaries given to
// startCluster, or none at all (nodes NotReady) and a CNI installed into the running
// nodes afterwards, as a DaemonSet would. Debian's ptp + host-local stand in here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { startCluster, clusterStatus, type Cluster } from '../../hack/cluster/cluster.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { waitFor } from '../../hack/cluster/exec.js';

const PTP_CONFLIST = JSON.stringify({
	cniVersion: '1.0.0',
	name: 'ptp-test',
	plugins: [
		{
			type: 'ptp',
			ipMasq: false,
			ipam: { type: 'host-local', ranges: [[{ subnet: '__POD_CIDR__' }]], routes: [{ dst: '0.0.0.0/0' }] },
		},
	],
});

function ptpCni(): { confDir: string; binDir: string; cleanup(): void } {
	const root = mkdtempSync(join(tmpdir(), 'weir-cni-'));
	const confDir = join(root, 'conf');
	const binDir = join(root, 'bin');
	mkdirSync(confDir);
	mkdirSync(binDir);
	writeFileSync(join(confDir, '10-ptp.conflist'), PTP_CONFLIST);
	for (const p of ['ptp', 'host-local']) copyFileSync(join('/usr/lib/cni', p), join(binDir, p));
	return { confDir, binDir, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

async function podsTalkAcrossNodes(c: Cluster): Promise<void> {
	for (const n of c.nodes) {
		await c.kubectl(['run', `p-${n.name}`, `--image=${c.images.workload}`, '--image-pull-policy=Never', `--overrides={"spec":{"nodeName":"${n.name}"}}`]);
	}
	await c.kubectl(['wait', '--for=condition=Ready', 'pod/p-n1', 'pod/p-n2', '--timeout=120s'], { timeoutMs: 130_000 });
	const ip2 = (await c.kubectl(['get', 'pod', 'p-n2', '-o', 'jsonpath={.status.podIP}'])).stdout.trim();
	const n2 = c.nodes.find((n) => n.name === 'n2')!;
	assert.ok(ip2.startsWith(n2.podCIDR.split('.').slice(0, 3).join('.') + '.'), `${ip2} in ${n2.podCIDR}`);
	const r = await c.kubectl(['exec', 'p-n1', '--', 'timeout', '10', 'wget', '-qO-', `http://${ip2}:8080/`]);
	assert.match(r.stdout, /pod=p-n2 .*status=200/);
	// ptp wiring: the pod's eth0 is a veth with a host-side gateway, no bridge on the node.
	const links = await c.nodeExec('n1', ['ip', '-o', 'link', 'show', 'type', 'bridge']);
	assert.equal(links.stdout.trim(), '');
}

test('custom CNI from a conf dir and a bin dir, templated per node', { timeout: 3_600_000 }, async (t) => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	const cni = ptpCni();
	const c = await startCluster({ name: 'tcni', cni, coreDns: false, log: (m) => t.diagnostic(m) });
	const pids = clusterStatus('tcni').processes.map((p) => p.pid);
	try {
		const conf = await c.nodeExec('n2', ['cat', '/etc/cni/net.d/10-ptp.conflist']);
		assert.ok(conf.stdout.includes(c.nodes[1]!.podCIDR), 'the PodCIDR placeholder is filled per node');
		await podsTalkAcrossNodes(c);
	} finally {
		assert.deepEqual((await c.stop()).left, []);
		cni.cleanup();
	}
	assert.deepEqual(await leftovers('tcni', pids), []);
});

test("cni 'none': nodes NotReady until a CNI is installed into the running nodes", { timeout: 3_600_000 }, async (t) => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	const c = await startCluster({ name: 'tnone', cni: 'none', coreDns: false, log: (m) => t.diagnostic(m) });
	const pids = clusterStatus('tnone').processes.map((p) => p.pid);
	try {
		const ready = async (): Promise<string> =>
			(await c.kubectl(['get', 'nodes', '-o', 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}'])).stdout;
		assert.equal(await ready(), 'False False');
		// What a CNI DaemonSet does: drop binaries and a conflist into the node.
		for (const n of c.nodes) {
			for (const p of ['ptp', 'host-local']) copyFileSync(join('/usr/lib/cni', p), join(n.rootDir, 'opt/cni/bin', p));
			writeFileSync(join(n.rootDir, 'etc/cni/net.d/10-ptp.conflist'), PTP_CONFLIST.replace('__POD_CIDR__', n.podCIDR));
		}
		await waitFor('nodes Ready after the CNI install', 60_000, async () => ((await ready()) === 'True True' ? true : undefined), 500);
		await podsTalkAcrossNodes(c);
	} finally {
		assert.deepEqual((await c.stop()).left, []);
	}
	assert.deepEqual(await leftovers('tnone', pids), []);
});
