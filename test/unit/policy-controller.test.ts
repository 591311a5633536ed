import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
// The model serializer client-node applies to list results (not exported at the top level).
import { ObjectSerializer } from '@kubernetes/client-node/dist/gen/models/ObjectSerializer.js';
import { DatapathEvent, EndpointInfo, IpcacheValue } from '../../src/kernel/codecs.js';
import { DROP_REASON_TEXT, Dir, DropReason, EndpointFlags, Identity, IpcacheFlags, MtlsPortMode } from '../../src/kernel/layout.js';
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
	/** `${epId}:${port}` -> mode */
	mtlsPorts = new Map<string, number>();
	mtlsPortEntries() {
		return [...this.mtlsPorts].map(([k, mode]) => ({ epId: Number(k.split(':')[0]), port: Number(k.split(':')[1]), mode }));
	}
	setMtlsPort(epId: number, port: number, mode: number) {
		this.writes.push(`mtls ${epId}:${port}=${mode}`);
		this.mtlsPorts.set(`${epId}:${port}`, mode);
	}
	deleteMtlsPort(epId: number, port: number) {
		this.writes.push(`mtls delete ${epId}:${port}`);
		return this.mtlsPorts.delete(`${epId}:${port}`);
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

/** A TCP SYN's event from endpoint 7 (ifindex 17), with what a test sets. */
function tcpEvent(e: Pick<DatapathEvent, 'type' | 'direction' | 'verdict' | 'src' | 'dst' | 'dport'> & Partial<DatapathEvent>): DatapathEvent {
	return {
		tsNs: 0n,
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
		sport: 40000,
		isReply: false,
		match: 'not-isolated',
		icmpType: 0,
		icmpCode: 0,
		...e,
	};
}

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
	const ev = tcpEvent({ type: 'policy-verdict', direction: 'egress', verdict: 'FORWARDED', src: '10.0.0.1', dst: '10.0.0.9', dport: 80 });
	const flow = toFlow(ev, index.context());
	assert.equal(flow.source.meshed, true);
	assert.equal(flow.destination.meshed, undefined);

	meshOn = false;
	assert.equal(c.run(), true);
	assert.equal(maps.endpoints.get('10.0.0.1')!.flags, 0, 'mesh off on the node: flags cleared');
	assert.deepEqual(addrFlags(), { '10.0.0.1/32': 0, '10.0.1.1/32': 0 });
	assert.equal(c.verdictLookups().meshed('10.0.0.1'), false);
});

const strictPa = (spec: unknown, name = 'strict') => ({
	apiVersion: 'security.istio.io/v1',
	kind: 'PeerAuthentication',
	metadata: { namespace: 'a', name, creationTimestamp: '2026-01-01T00:00:00Z' },
	spec,
});

test('PeerAuthentication through the controller: STRICT and port entries written from the snapshot, cleared without it, problems logged once, and a MTLS_REQUIRED drop names the policy', () => {
	const maps = new MemoryMaps();
	const objects: Omit<Snapshot, 'synced'> = {
		pods: [pod('a', 'web', '10.0.0.1', { app: 'web' })],
		namespaces: [ns('a', { [MESH_KEY]: 'enabled' })],
		policies: [],
		nodes: [],
	};
	const warned: string[] = [];
	const log = { ...quiet, warn: (_o: object, m: string) => void warned.push(m) };
	const c = new PolicyController({
		node: 'n1',
		snapshot: () => ({ synced: true, ...objects }),
		endpoints: () => [{ namespace: 'a', pod: 'web', ip: '10.0.0.1', epId: 7, ifindex: 17 }],
		maps,
		log,
	});
	const flags = (): number => maps.endpoints.get('10.0.0.1')!.flags;
	assert.equal(c.run(), true);
	assert.equal(flags(), EndpointFlags.Meshed, 'no PeerAuthentications listed (the CRD absent): none');

	objects.peerAuthentications = [strictPa({ mtls: { mode: 'STRICT' }, portLevelMtls: { 8081: { mode: 'PERMISSIVE' } } })];
	maps.writes.length = 0;
	assert.equal(c.run(), true);
	assert.equal(flags(), EndpointFlags.Meshed | EndpointFlags.MtlsStrict | EndpointFlags.MtlsPorts);
	assert.deepEqual([...maps.mtlsPorts], [['7:8081', MtlsPortMode.Permissive]]);
	assert.deepEqual(maps.writes, ['endpoint 10.0.0.1', 'mtls 7:8081=1'], 'the flags first, the port that loosens after them');
	assert.equal(warned.filter((m) => m.startsWith('PeerAuthentication')).length, 1, 'portLevelMtls without a selector is a problem');
	assert.equal(c.run(), true);
	assert.equal(warned.filter((m) => m.startsWith('PeerAuthentication')).length, 1, 'logged once, not on every run');

	// The flow of a refused connection names the PeerAuthentication, as a policy drop names its policy.
	const index = new FlowIndex('n1', () => 0);
	index.update(objects.pods, c.verdictLookups());
	const drop = (dport: number): DatapathEvent =>
		tcpEvent({
			type: 'drop',
			direction: 'ingress',
			verdict: 'DROPPED',
			reason: DropReason.MTLS_REQUIRED,
			reasonName: 'MTLS_REQUIRED',
			src: '10.0.9.9',
			dst: '10.0.0.1',
			dport,
		});
	const flow = toFlow(drop(8080), index.context());
	assert.equal(flow.verdict, 'DROPPED');
	assert.equal(flow.dropReasonDesc, DROP_REASON_TEXT.MTLS_REQUIRED);
	assert.deepEqual(flow.isolatedBy, [{ kind: 'PeerAuthentication', namespace: 'a', name: 'strict' }]);
	assert.match(flow.summary, /DROPPED \(MTLS_REQUIRED: the destination requires mutual TLS .*; isolated by PeerAuthentication a\/strict\)$/);
	assert.equal(toFlow(drop(8081), index.context()).isolatedBy, undefined, 'a PERMISSIVE port names no policy');

	objects.peerAuthentications = [];
	maps.writes.length = 0;
	assert.equal(c.run(), true);
	assert.equal(flags(), EndpointFlags.Meshed, 'the policy deleted: cleared');
	assert.deepEqual([...maps.mtlsPorts], []);
	assert.deepEqual(maps.writes, ['mtls delete 7:8081', 'endpoint 10.0.0.1'], 'a PERMISSIVE entry goes before the flags');
});

test('the reconciler writes what makes a port stricter before the endpoint flags and what loosens one after: no step admits plaintext that a state refuses, an endpoint id reused included', () => {
	const maps = new MemoryMaps();
	const r = new MapReconciler(maps);
	const ep = (flags: number): Map<string, EndpointInfo> => new Map([['10.0.0.1', { epId: 7, identity: 300, ifindex: 17, flags }]]);
	const apply = (flags: number, ports: Array<[number, number]>) =>
		r.apply({ ipcache: new Map(), endpoints: ep(flags), policy: new Map(), mtlsPorts: new Map(ports.map(([p, m]) => [`7:${p}`, m])) });
	const S = EndpointFlags.MtlsStrict;
	const P = EndpointFlags.MtlsPorts;
	const { Strict, Permissive } = MtlsPortMode;
	// An old pod with endpoint id 7: PERMISSIVE, its port 80 STRICT and its port 81 PERMISSIVE (under a STRICT pod before).
	apply(P, [
		[80, Strict],
		[81, Permissive],
	]);
	maps.writes.length = 0;
	// A new pod takes the id: STRICT, port 80 PERMISSIVE, no entry for 81.
	const stats = apply(S | P, [[80, Permissive]]);
	assert.deepEqual(maps.writes, ['mtls delete 7:81', 'endpoint 10.0.0.1', 'mtls 7:80=1'], 'the stale PERMISSIVE 81 goes before the flags make the pod STRICT');
	assert.deepEqual([stats.mtlsPortsSet, stats.mtlsPortsRemoved], [1, 1]);
	maps.writes.length = 0;
	apply(0, [[443, Strict]]);
	assert.deepEqual(
		maps.writes,
		['mtls 7:443=2', 'mtls delete 7:80', 'endpoint 10.0.0.1'],
		'what makes a port stricter (a STRICT entry, a PERMISSIVE one removed) before the flags',
	);
	maps.writes.length = 0;
	assert.equal(apply(0, [[443, Strict]]).mtlsPortsSet, 0, 'applied again: nothing');
	apply(S, []);
	assert.deepEqual(maps.writes, ['endpoint 10.0.0.1', 'mtls delete 7:443'], 'a STRICT entry removed after the flags');
	maps.writes.length = 0;
	apply(0, [[443, Strict]]);
	// A restarted agent reads the entries back.
	const again = new MapReconciler(maps);
	assert.equal(again.apply({ ipcache: new Map(), endpoints: ep(0), policy: new Map(), mtlsPorts: new Map([['7:443', Strict]]) }).mtlsPortsSet, 0);
	assert.equal(again.apply({ ipcache: new Map(), endpoints: ep(0), policy: new Map() }).mtlsPortsRemoved, 1, 'none desired: removed');
	assert.deepEqual([...maps.mtlsPorts], []);
});

/** The socket LB's sources map in memory, with a log of writes. */
