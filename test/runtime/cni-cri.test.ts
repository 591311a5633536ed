// containerd's CRI (the kubelet's caller) creating pod sandboxes networked by Weir:
// a private containerd in the lab's node namespace, its CRI plugin reading the lab's
// conflist (weir-cni, then portmap), driven over the CRI gRPC API like crictl runp.
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { CniLab, ping } from '../helpers/cni-lab.js';
import { Containerd } from '../helpers/containerd.js';
import type { EndpointRecord } from '../../src/cni-plugin/endpoint-store.js';

let lab: CniLab | undefined;
let ctrd: Containerd | undefined;
afterEach(async () => {
	try {
		await ctrd?.stop();
	} finally {
		ctrd = undefined;
		lab?.destroy();
		lab = undefined;
	}
});

describe('weir-cni under containerd CRI', () => {
	test('runp: sandboxes get addresses from Weir, reach each other, and leave nothing behind when removed', async () => {
		assert.equal(process.getuid?.(), 0, 'the CRI test needs root');
		lab = CniLab.create({ openIdentity: 300, subnet: '10.78.0.0/24' });
		await lab.startAgent();
		ctrd = await Containerd.start({ id: lab.id, nodeNs: lab.nodeNs, cniConfDir: lab.confDir, cniBinDir: lab.binDir });
		const names = ['web', 'api', 'db'];
		const ids: string[] = [];
		for (const [i, n] of names.entries()) ids.push(await ctrd.runp(n, 'shop', `uid-${lab.id}-${i}`));
		const status = await Promise.all(ids.map((id) => ctrd!.inspectp(id)));
		for (const s of status) {
			assert.equal(s.state, 'SANDBOX_READY');
			assert.match(s.ip, /^10\.78\.0\.\d+$/);
		}
		assert.equal(new Set(status.map((s) => s.ip)).size, names.length);
		assert.equal(lab.endpointKeys(), names.length);
		// The endpoint store knows each sandbox by its Kubernetes name (CNI_ARGS from the CRI).
		const records = (JSON.parse(readFileSync(lab.stateFile, 'utf8')) as { endpoints: EndpointRecord[] }).endpoints;
		assert.deepEqual(records.map((r) => `${r.namespace}/${r.pod}`).sort(), names.map((n) => `shop/${n}`).sort());
		for (const r of records) assert.equal(r.ip, status[names.indexOf(r.pod)]!.ip);
		// Traffic between sandboxes, through their pod netns.
		const byPod = new Map(records.map((r) => [r.pod, r]));
		assert.ok(await ping(byPod.get('web')!.netns, byPod.get('db')!.ip), 'web -> db');
		assert.ok(await ping(byPod.get('db')!.netns, byPod.get('api')!.ip), 'db -> api');

		for (const id of ids) {
			await ctrd.stopp(id);
			await ctrd.rmp(id);
		}
		assert.deepEqual(await ctrd.pods(), []);
		assert.deepEqual(await lab.hostVeths(), []);
		assert.deepEqual(lab.ipamAllocations(), []);
		assert.deepEqual(lab.linkPins(), []);
		assert.equal(lab.endpointKeys(), 0);
		for (const r of records) assert.equal(existsSync(r.netns), false, `${r.netns} removed by containerd`);
		await lab.stopAgent();
	});
});
