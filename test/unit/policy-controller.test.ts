import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
// The model serializer client-node applies to list results (not exported at the top level).
import { ObjectSerializer } from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import { DatapathEvent, EndpointInfo, IpcacheValue } from '../../src/kernel/codecs.js';
import { Dir, EndpointFlags, Identity, IpcacheFlags } from '../../src/kernel/layout.js';
import { PolicyController, Snapshot, networkPolicy, podInfo } from '../../src/policy/controller.js';
import { workloadOf } from '../../src/cluster/objects.js';
import { FlowIndex } from '../../src/observe/flow-index.js';
import { toFlow } from '../../src/observe/flow.js';
import { MESH_KEY } from '../../src/shared/mesh.js';
import { MapReconciler, PolicyMaps } from '../../src/policy/reconcile.js';

const raw = {
	apiVersion: 'networking.k8s.io/v1',
	kind: 'NetworkPolicy',
	metadata: { name: 'only-app', namespace: 'd' },
	spec: { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'app' } } }], ports: [{ port: 6379 }] }] },
};

test('a listed policy (client-node typed model, `_from`) reads the same as a watched one (`from`)', () => {
	const typed = ObjectSerializer.deserialize(raw, 'V1NetworkPolicy', '') as k8s.V1NetworkPolicy;
	assert.equal((typed.spec!.ingress![0] as { from?: unknown }).from, undefined, 'the typed model renames the field');
	for (const p of [typed, raw as k8s.V1NetworkPolicy]) {
		const n = networkPolicy(p);
		assert.deepEqual(JSON.parse(JSON.stringify(n.spec!.ingress![0]!.from)), [{ namespaceSelector: { matchLabels: { team: 'app' } } }]);
		assert.equal((n.spec!.ingress![0] as { _from?: unknown })._from, undefined);
	}
});

class MemoryMaps implements PolicyMaps {
	ipcache = new Map<string, IpcacheValue>();
	endpoints = new Map<string, EndpointInfo>();
	policy = new Map<string, Buffer>();
	writes: string[] = [];
	ipcacheEntries() {
		return [...this.ipcache].map(([cidr, v]) => ({ cidr, ...v }));
	}
	setIpcache(cidr: string, identity: number, flags: number) {
		this.writes.push(`ipcache ${cidr}`);
		this.ipcache.set(cidr, { identity, flags });
	}
	deleteIpcache(cidr: string) {
		return this.ipcache.delete(cidr);
	}
	endpointEntries() {
		return [...this.endpoints].map(([ip, e]) => ({ ip, ...e }));
	}
	setEndpoint(ip: string, e: EndpointInfo) {
		this.writes.push(`endpoint ${ip}`);
		this.endpoints.set(ip, e);
	}
	deleteEndpoint(ip: string) {
		this.writes.push(`endpoint delete ${ip}`);
		return this.endpoints.delete(ip);
	}
	policyRaw(): Array<[Buffer, Buffer]> {
		return [...this.policy].map(([k, v]) => [Buffer.from(k, 'hex'), v]);
	}
	putPolicyRaw(k: Buffer, v: Buffer) {
		this.writes.push('policy put');
		this.policy.set(k.toString('hex'), v);
	}
	deletePolicyRaw(k: Buffer) {
		this.writes.push('policy delete');
		return this.policy.delete(k.toString('hex'));
	}
}

const ns = (name: string, labels: Record<string, string>): k8s.V1Namespace => ({ metadata: { name, labels } });
const pod = (namespace: string, name: string, ip: string, labels: Record<string, string>): k8s.V1Pod => ({
	metadata: {
		namespace,
		name,
		labels,
		ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${name}-7d9f8c6b5`, uid: 'u', controller: true }],
	},
	spec: { nodeName: 'n1', containers: [{ name: 'c', ports: [{ name: 'redis', containerPort: 6379 }] }] },
	status: { phase: 'Running', podIPs: [{ ip }] },
});

test('the controller enforces nothing before sync, then writes policy before identities, and survives a restart with stable numbers', () => {
	const maps = new MemoryMaps();
	let synced = false;
	const objects = {
		pods: [pod('d', 'redis', '10.0.0.3', { app: 'redis' }), pod('a', 'app', '10.0.0.1', { app: 'app' }), pod('b', 'apache', '10.0.0.2', { app: 'apache' })],
		namespaces: [ns('a', { team: 'app' }), ns('b', {}), ns('d', {})],
		policies: [ObjectSerializer.deserialize(raw, 'V1NetworkPolicy', '') as k8s.V1NetworkPolicy],
		nodes: [{ metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.1' }] } } as k8s.V1Node],
	};
	const snapshot = (): Snapshot => ({ synced, ...objects });
	const endpoints = [
		{ namespace: 'd', pod: 'redis', ip: '10.0.0.3', epId: 3, ifindex: 13 },
		{ namespace: 'b', pod: 'apache', ip: '10.0.0.2', epId: 2, ifindex: 12 },
	];
	const log = { info: () => undefined, warn: () => undefined, error: () => undefined };
	const make = () => new PolicyController({ node: 'n1', snapshot, endpoints: () => endpoints, maps, log });
	const c = make();
	assert.equal(c.run(), false, 'not synced: nothing applied');
	assert.equal(maps.writes.length, 0);
	synced = true;
	assert.equal(c.run(), true);
	assert.equal(maps.writes[0], 'policy put', 'policy entries go in first');
	const redis = maps.endpoints.get('10.0.0.3')!;
	assert.equal(redis.flags, EndpointFlags.IngressIsolated);
	assert.equal(redis.ifindex, 13);
	assert.deepEqual(maps.ipcache.get('198.18.0.1/32'), { identity: Identity.Host, flags: 0 });
	assert.equal(maps.policy.size, 1, 'one entry: the app identity on TCP 6379 (not a wildcard)');
	const index = new FlowIndex('n1', () => 0);
	index.update(objects.pods, c.verdictLookups());
	const ctx = index.context();
	assert.deepEqual(ctx.isolatedBy(3, 'ingress'), ['d/only-app']);
	assert.equal(ctx.podByIp('10.0.0.1')?.workload, 'app');
	const before = new Map(maps.ipcache);

	// A restarted agent (new allocators) with the pods listed in another order keeps every number.
	objects.pods.reverse();
	maps.writes.length = 0;
	const again = make();
	assert.equal(again.run(), true);
	assert.deepEqual(new Map(maps.ipcache), before);
	assert.deepEqual(
		maps.writes.filter((w) => w.startsWith('ipcache')),
		[],
		'no identity moved',
	);

	// A pod the CNI has let go of loses its entry, even if an earlier compile wrote it back.
	endpoints.splice(1, 1);
	maps.endpoints.set('10.0.0.2', { epId: 2, identity: 999, ifindex: 12, flags: 0 });
	assert.equal(again.run(), true);
	assert.equal(maps.endpoints.has('10.0.0.2'), false);
	assert.equal(maps.endpoints.has('10.0.0.3'), true);
	void Dir;
});

test('the reconciler rewrites an ipcache entry whose flags alone changed, and nothing else; a restarted one reads the flags back', () => {
	const maps = new MemoryMaps();
	const ipcache = new Map([
		['10.0.0.1/32', 300],
		['10.0.0.2/32', 301],
	]);
	const desired = (flags?: Map<string, number>) => ({ ipcache, ipcacheFlags: flags, endpoints: new Map<string, EndpointInfo>(), policy: new Map() });
	const r = new MapReconciler(maps);
	assert.equal(r.apply(desired()).ipcacheSet, 2);
	assert.deepEqual(maps.ipcache.get('10.0.0.2/32'), { identity: 301, flags: 0 });
	maps.writes.length = 0;

	const meshed = new Map([['10.0.0.2/32', IpcacheFlags.Meshed]]);
	assert.equal(r.apply(desired(meshed)).ipcacheSet, 1, 'same identity, new flags: rewritten');
	assert.deepEqual(maps.writes, ['ipcache 10.0.0.2/32']);
	assert.deepEqual(maps.ipcache.get('10.0.0.2/32'), { identity: 301, flags: IpcacheFlags.Meshed });
	assert.deepEqual(maps.ipcache.get('10.0.0.1/32'), { identity: 300, flags: 0 });
	assert.equal(r.apply(desired(meshed)).ipcacheSet, 0, 'applied again: nothing to write');
	assert.deepEqual(r.appliedIpcache(), ipcache, 'the numbering hints are identities only');

	// A restarted agent's reconciler starts from the map, flags included.
	maps.writes.length = 0;
	const again = new MapReconciler(maps);
	assert.equal(again.apply(desired(meshed)).ipcacheSet, 0);
	assert.equal(again.apply(desired()).ipcacheSet, 1, 'flags no longer wanted: rewritten with none');
	assert.deepEqual(maps.writes, ['ipcache 10.0.0.2/32']);
	assert.deepEqual(maps.ipcache.get('10.0.0.2/32'), { identity: 301, flags: 0 });

	// A prefix removed and added back starts with no flags remembered.
	assert.equal(again.apply({ ...desired(), ipcache: new Map([['10.0.0.1/32', 300]]) }).ipcacheRemoved, 1);
	assert.equal(again.apply(desired(meshed)).ipcacheSet, 1);
	assert.deepEqual(maps.ipcache.get('10.0.0.2/32'), { identity: 301, flags: IpcacheFlags.Meshed });
});

test('pods: terminal phases are gone, ports, host networking and the mesh annotation are read', () => {
	assert.equal(podInfo({ ...pod('a', 'x', '10.0.0.9', {}), status: { phase: 'Succeeded', podIPs: [{ ip: '10.0.0.9' }] } }), undefined);
	const p = podInfo(pod('a', 'x', '10.0.0.9', { k: 'v' }))!;
	assert.deepEqual(p.ports, [{ containerPort: 6379, name: 'redis' }]);
	assert.equal(workloadOf(pod('a', 'web', '10.0.0.9', {})), 'web');
	// Of the annotations, only those mesh membership reads are kept (a change of any other is no world change).
	const annotated = pod('a', 'x', '10.0.0.9', {});
	annotated.metadata!.annotations = { [MESH_KEY]: 'disabled', 'kubectl.kubernetes.io/last-applied-configuration': '{}' };
	assert.deepEqual(podInfo(annotated)!.annotations, { [MESH_KEY]: 'disabled' });
	assert.equal(p.annotations, undefined);
});

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

test('the policy controller writes the mesh flags from a namespace label and clears them, and names meshed pods in flows', () => {
	const maps = new MemoryMaps();
	const objects = {
		pods: [pod('a', 'web', '10.0.0.1', { app: 'web' }), { ...pod('a', 'far', '10.0.1.1', { app: 'far' }), spec: { nodeName: 'n2', containers: [] } }],
		namespaces: [ns('a', {})],
		policies: [],
		nodes: [],
	};
	const snapshot = (): Snapshot => ({ synced: true, ...objects });
	let meshOn = true;
	const c = new PolicyController({
		node: 'n1',
		snapshot,
		endpoints: () => [{ namespace: 'a', pod: 'web', ip: '10.0.0.1', epId: 7, ifindex: 17 }],
		maps,
		log: quiet,
		mesh: () => meshOn,
	});
	const addrFlags = (): Record<string, number> => Object.fromEntries(['10.0.0.1/32', '10.0.1.1/32'].map((p) => [p, maps.ipcache.get(p)?.flags ?? -1]));
	assert.equal(c.run(), true);
	assert.equal(maps.endpoints.get('10.0.0.1')!.flags, 0);
	assert.deepEqual(addrFlags(), { '10.0.0.1/32': 0, '10.0.1.1/32': 0 });
	objects.namespaces = [ns('a', { [MESH_KEY]: 'enabled' })];
	assert.equal(c.run(), true);
	assert.deepEqual(maps.endpoints.get('10.0.0.1'), { epId: 7, identity: maps.endpoints.get('10.0.0.1')!.identity, ifindex: 17, flags: EndpointFlags.Meshed });
	assert.deepEqual(
		addrFlags(),
		{ '10.0.0.1/32': IpcacheFlags.Meshed, '10.0.1.1/32': IpcacheFlags.Meshed },
		'the local and the remote pod are meshed destinations',
	);

	// Flows name the local pod as meshed.
	const index = new FlowIndex('n1', () => 0);
	index.update(objects.pods, c.verdictLookups());
	const ev: DatapathEvent = {
		tsNs: 0n,
		type: 'policy-verdict',
		direction: 'egress',
		verdict: 'FORWARDED',
		reason: 0,
		reasonName: 'NONE',
		protocol: 6,
		tcpFlags: 2,
		epId: 7,
		srcIdentity: 0,
		dstIdentity: 0,
		ruleId: 0,
		ifindex: 17,
		pktLen: 60,
		src: '10.0.0.1',
		dst: '10.0.0.9',
		sport: 40000,
		dport: 80,
		isReply: false,
		match: 'not-isolated',
		icmpType: 0,
		icmpCode: 0,
	};
	const flow = toFlow(ev, index.context());
	assert.equal(flow.source.meshed, true);
	assert.equal(flow.destination.meshed, undefined);

	meshOn = false;
	assert.equal(c.run(), true);
	assert.equal(maps.endpoints.get('10.0.0.1')!.flags, 0, 'mesh off on the node: flags cleared');
	assert.deepEqual(addrFlags(), { '10.0.0.1/32': 0, '10.0.1.1/32': 0 });
	assert.equal(c.verdictLookups().meshed('10.0.0.1'), false);
});

/** The socket LB's sources map in memory, with a log of writes. */
