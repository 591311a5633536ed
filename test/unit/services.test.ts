// The service table: Services + EndpointSlices → load balancer entries, and the
// controller's incremental apply (an in-memory stand-in for the maps: the port is the
// contract, the real maps are tested in the kernel tier).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import { Backend, DEFAULT_AFFINITY_SEC, Frontend, ServiceIdAllocator, compileServices, frontendKey } from '../../src/services/compile.js';
import { ServiceController, ServiceMaps } from '../../src/services/controller.js';

function svc(ns: string, name: string, ip: string, ports: k8s.V1ServicePort[], extra: Partial<k8s.V1ServiceSpec> = {}): k8s.V1Service {
	return { metadata: { namespace: ns, name }, spec: { clusterIP: ip, clusterIPs: [ip], ports, ...extra } };
}

function slice(
	ns: string,
	svcName: string,
	name: string,
	ports: k8s.DiscoveryV1EndpointPort[],
	eps: Array<{ ip: string; ready?: boolean; node?: string }>,
): k8s.V1EndpointSlice {
	return {
		addressType: 'IPv4',
		metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svcName } },
		ports,
		endpoints: eps.map((e) => ({
			addresses: [e.ip],
			...(e.ready === undefined ? {} : { conditions: { ready: e.ready } }),
			...(e.node ? { nodeName: e.node } : {}),
		})),
	};
}

test('ClusterIP ports become frontends with their ready backends, by port name and protocol', () => {
	const services = [
		svc('y', 's', '10.96.0.10', [
			{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' },
			{ name: 'dns', port: 53, protocol: 'UDP' },
			{ name: 'sctp', port: 9, protocol: 'SCTP' },
		]),
		svc('y', 'headless', 'None', [{ port: 80 }]),
		{ metadata: { namespace: 'y', name: 'ext' }, spec: { type: 'ExternalName', externalName: 'example.test' } },
	];
	const slices = [
		slice(
			'y',
			's',
			's-1',
			[
				{ name: 'http', port: 8080, protocol: 'TCP' },
				{ name: 'dns', port: 5353, protocol: 'UDP' },
			],
			[{ ip: '10.244.1.5' }, { ip: '10.244.1.4', ready: true }, { ip: '10.244.2.9', ready: false }],
		),
		slice('y', 's', 's-2', [{ name: 'http', port: 8080, protocol: 'TCP' }], [{ ip: '10.244.1.4' }, { ip: '10.244.3.1' }]),
		slice('y', 'other', 'o-1', [{ name: 'http', port: 1, protocol: 'TCP' }], [{ ip: '10.244.9.9' }]),
	];
	const c = compileServices({ services, slices, ids: new ServiceIdAllocator(), node: 'n1' });
	assert.deepEqual([...c.entries.keys()].sort(), ['10.96.0.10:53/UDP', '10.96.0.10:80/TCP']);
	const http = c.entries.get('10.96.0.10:80/TCP')!;
	assert.deepEqual(
		http.backends,
		[
			{ ip: '10.244.1.4', port: 8080 },
			{ ip: '10.244.1.5', port: 8080 },
			{ ip: '10.244.3.1', port: 8080 },
		],
		'not-ready left out, duplicates across slices once, sorted',
	);
	assert.deepEqual(http.service, { namespace: 'y', name: 's', port: 'http' });
	assert.deepEqual(c.entries.get('10.96.0.10:53/UDP')!.backends, [
		{ ip: '10.244.1.4', port: 5353 },
		{ ip: '10.244.1.5', port: 5353 },
	]);
	assert.equal(http.affinitySec, 0);
	assert.deepEqual(
		c.problems.map((p) => p.service),
		['y/s'],
		'SCTP is reported, not silently taken',
	);
	assert.notEqual(http.id, c.entries.get('10.96.0.10:53/UDP')!.id);
});

test('sessionAffinity ClientIP, internalTrafficPolicy Local, and a Service with no ready backend', () => {
	const services = [
		svc('a', 'sticky', '10.96.1.1', [{ port: 80, protocol: 'TCP' }], { sessionAffinity: 'ClientIP' }),
		svc('a', 'sticky2', '10.96.1.2', [{ port: 80, protocol: 'TCP' }], {
			sessionAffinity: 'ClientIP',
			sessionAffinityConfig: { clientIP: { timeoutSeconds: 30 } },
		}),
		svc('a', 'local', '10.96.1.3', [{ port: 80, protocol: 'TCP' }], { internalTrafficPolicy: 'Local' }),
		svc('a', 'empty', '10.96.1.4', [{ port: 80, protocol: 'TCP' }]),
	];
	const slices = [
		slice(
			'a',
			'local',
			'l',
			[{ port: 80, protocol: 'TCP' }],
			[
				{ ip: '10.244.1.1', node: 'n1' },
				{ ip: '10.244.2.1', node: 'n2' },
			],
		),
	];
	const c = compileServices({ services, slices, ids: new ServiceIdAllocator(), node: 'n1' });
	assert.equal(c.entries.get('10.96.1.1:80/TCP')!.affinitySec, DEFAULT_AFFINITY_SEC);
	assert.equal(c.entries.get('10.96.1.2:80/TCP')!.affinitySec, 30);
	assert.deepEqual(c.entries.get('10.96.1.3:80/TCP')!.backends, [{ ip: '10.244.1.1', port: 80 }]);
	assert.deepEqual(c.entries.get('10.96.1.4:80/TCP')!.backends, [], 'kept with no backend: connects are refused, not sent on to kube-proxy');
});

test('a Service with hundreds of ports: one frontend each, ids unique', () => {
	const ports = Array.from({ length: 300 }, (_, i) => ({ name: `p${i}`, port: 1000 + i, protocol: 'TCP' }));
	const c = compileServices({
		services: [svc('b', 'wide', '10.96.2.1', ports)],
		slices: [
			slice(
				'b',
				'wide',
				'w',
				ports.map((p) => ({ name: p.name, port: p.port + 1, protocol: 'TCP' })),
				[{ ip: '10.244.1.9' }],
			),
		],
		ids: new ServiceIdAllocator(),
		node: 'n1',
	});
	assert.equal(c.entries.size, 300);
	assert.equal(new Set([...c.entries.values()].map((e) => e.id)).size, 300);
	assert.deepEqual(c.entries.get('10.96.2.1:1299/TCP')!.backends, [{ ip: '10.244.1.9', port: 1300 }]);
});

test('ids: stable while a frontend lives, not reused at once when it goes, seeded after a restart', () => {
	const ids = new ServiceIdAllocator();
	const a = ids.idFor('a')!;
	const b = ids.idFor('b')!;
	assert.notEqual(a, b);
	assert.equal(ids.idFor('a'), a);
	ids.retain(new Set(['b']));
	const c = ids.idFor('c')!;
	assert.notEqual(c, a, 'a freed id is not handed out next');
	const restarted = new ServiceIdAllocator();
	restarted.seed('b', b);
	assert.equal(restarted.idFor('b'), b);
	assert.notEqual(restarted.idFor('z'), b);
});

class MemoryMaps implements ServiceMaps {
	readonly held = new Map<string, { id: number; frontend: Frontend; backends: Backend[]; affinitySec: number }>();
	readonly writes: string[] = [];
	failNext = false;
	services() {
		return [...this.held.values()];
	}
	upsertService(e: { id: number; frontend: Frontend; backends: readonly Backend[]; affinitySec: number }): void {
		if (this.failNext) {
			this.failNext = false;
			throw new Error('E2BIG: map full');
		}
		this.held.set(frontendKey(e.frontend), { ...e, backends: [...e.backends] });
		this.writes.push(`put ${frontendKey(e.frontend)}`);
	}
	deleteService(f: Frontend): void {
		this.held.delete(frontendKey(f));
		this.writes.push(`del ${frontendKey(f)}`);
	}
}

test('the controller applies only what changed, deletes what went, and adopts the maps after a restart', () => {
	const maps = new MemoryMaps();
	maps.held.set('10.96.9.9:80/TCP', {
		id: 7,
		frontend: { vip: '10.96.9.9', port: 80, protocol: 'TCP' },
		backends: [{ ip: '10.244.1.1', port: 80 }],
		affinitySec: 0,
	});
	maps.held.set('10.96.0.10:80/TCP', { id: 42, frontend: { vip: '10.96.0.10', port: 80, protocol: 'TCP' }, backends: [], affinitySec: 0 });
	let synced = false;
	const objects = {
		services: [svc('y', 's', '10.96.0.10', [{ port: 80, protocol: 'TCP' }])],
		slices: [slice('y', 's', 's-1', [{ port: 8080, protocol: 'TCP' }], [{ ip: '10.244.1.5' }])],
	};
	const log = { warn: () => undefined, error: () => undefined };
	const ctl = new ServiceController({ node: 'n1', snapshot: () => ({ synced, ...objects }), maps, log });
	assert.equal(ctl.run(), false, 'nothing before sync');
	assert.equal(maps.writes.length, 0);
	synced = true;
	assert.equal(ctl.run(), true);
	assert.deepEqual(maps.writes, ['put 10.96.0.10:80/TCP', 'del 10.96.9.9:80/TCP'], 'the stale entry of a deleted Service goes');
	assert.equal(maps.held.get('10.96.0.10:80/TCP')!.id, 42, 'the id the previous agent gave is kept');
	assert.equal(ctl.serviceById(42)?.name, 's');

	maps.writes.length = 0;
	assert.equal(ctl.run(), true);
	assert.deepEqual(maps.writes, [], 'nothing changed, nothing written');

	// The backend goes away (EndpointSlice churn), then the Service is recreated with the same IP.
	objects.slices = [slice('y', 's', 's-1', [{ port: 8080, protocol: 'TCP' }], [{ ip: '10.244.1.5', ready: false }])];
	assert.equal(ctl.run(), true);
	assert.deepEqual(maps.held.get('10.96.0.10:80/TCP')!.backends, []);
	objects.services = [svc('y', 's2', '10.96.0.10', [{ port: 80, protocol: 'TCP' }])];
	objects.slices = [slice('y', 's2', 'x', [{ port: 9090, protocol: 'TCP' }], [{ ip: '10.244.1.6' }])];
	assert.equal(ctl.run(), true);
	assert.deepEqual(maps.held.get('10.96.0.10:80/TCP')!.backends, [{ ip: '10.244.1.6', port: 9090 }], 'no stale translation survives');
	assert.equal(ctl.serviceById(maps.held.get('10.96.0.10:80/TCP')!.id)?.name, 's2');

	// A failed write is reported, and the next run re-reads the maps and completes.
	objects.slices = [slice('y', 's2', 'x', [{ port: 9090, protocol: 'TCP' }], [{ ip: '10.244.1.7' }])];
	maps.failNext = true;
	assert.equal(ctl.run(), false);
	assert.match(ctl.lastError ?? '', /E2BIG/);
	assert.equal(ctl.run(), true);
	assert.deepEqual(maps.held.get('10.96.0.10:80/TCP')!.backends, [{ ip: '10.244.1.7', port: 9090 }]);
	assert.equal(ctl.lastError, undefined);
});
