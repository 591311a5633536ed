// The agent's side of the socket load balancer: where it attaches (the node's cgroup),
// and how a flow names the Service a local client addressed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CgroupError, nodePart, resolveCgroupRoot, unifiedPath } from '../../src/agent/cgroup.js';
import { serviceLookups, type SocketLbHandle } from '../../src/agent/service-lb.js';
import { FlowIndex } from '../../src/observe/flow-index.js';
import { toFlow } from '../../src/observe/flow.js';
import { decodeRecord, type DatapathEvent, type SockDropEvent } from '../../src/kernel/codecs.js';
import { DropReason, EventType, Identity, encode } from '../../src/kernel/layout.js';
import { ipv4ToInt } from '../../src/shared/ipv4.js';
import { matchesFilter } from '../../src/observe/flow.js';
import { formatFlow } from '../../src/cli/observe.js';
import { flowMatches } from '../../src/relay/filter.js';
import { toRequest } from '../../src/relay/query.js';
import type * as k8s from '@kubernetes/client-node';

test('the node part of a pod container cgroup path, for each kubelet layout', () => {
	assert.equal(unifiedPath('12:pids:/x\n1:name=systemd:/y\n0::/weir-weir/n1/kubepods/besteffort/pod1/abc\n'), '/weir-weir/n1/kubepods/besteffort/pod1/abc');
	assert.equal(unifiedPath('12:pids:/x\n'), undefined);
	assert.equal(nodePart('/weir-weir/n1/kubepods/besteffort/pod1/abc'), '/weir-weir/n1', 'cgroupfs driver under a cgroup root');
	assert.equal(nodePart('/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod1.slice/cri-containerd-abc.scope'), '/', 'systemd driver at the root');
	assert.equal(nodePart('/weir-weir/n2/containerd'), '/weir-weir/n2/containerd', 'no kubelet part: the process is the node');
	assert.equal(nodePart('/../../n1'), '/', 'outside our cgroup namespace');
	assert.equal(nodePart('/'), '/');
});

test('cgroup-root: auto finds the node under the first cgroup v2 mount; a bad setting is a clear error', () => {
	const v2 = new Set(['/run/weir/cgroupv2/unified', '/tmp/x']);
	const io = (own: string, exists = true) => ({ isCgroup2: (d: string) => v2.has(d), exists: () => exists, ownCgroup: () => own });
	assert.equal(resolveCgroupRoot('auto', io('0::/weir-weir/n1/kubepods/pod1/c\n')), '/run/weir/cgroupv2/unified/weir-weir/n1');
	assert.equal(resolveCgroupRoot('/tmp/x', io('')), '/tmp/x');
	assert.throws(
		() => resolveCgroupRoot('/etc', io('')),
		(e: unknown) => e instanceof CgroupError && e.code === 'WEIR_ERR_CGROUP' && /not a cgroup v2 directory/.test(e.message),
	);
	assert.throws(() => resolveCgroupRoot('auto', io('12:pids:/x\n')), /no 0:: line/);
	assert.throws(() => resolveCgroupRoot('auto', io('0::/a/kubepods/x', false)), /does not exist under \/run\/weir\/cgroupv2\/unified: set cgroup-root/);
	assert.throws(() => resolveCgroupRoot('auto', { ...io('0::/'), isCgroup2: () => false }), /no cgroup v2 hierarchy/);
});

function event(over: Partial<DatapathEvent>): DatapathEvent {
	return {
		type: 'verdict',
		verdict: 'FORWARDED',
		reason: 0,
		reasonName: 'NONE',
		direction: 'egress',
		isReply: false,
		match: 'L4',
		tsNs: 0n,
		src: '10.244.1.5',
		dst: '10.244.2.7',
		sport: 40000,
		dport: 8080,
		protocol: 6,
		tcpFlags: 0x02,
		srcIdentity: 300,
		dstIdentity: 301,
		epId: 1,
		ruleId: 0,
		icmpType: 0,
		icmpCode: 0,
		...over,
	} as DatapathEvent;
}

test('a flow to a backend names the Service its client addressed, and only then', () => {
	const calls: string[] = [];
	const lb: SocketLbHandle = {
		services: () => [],
		upsertService: () => undefined,
		deleteService: () => undefined,
		addressedService: (cookie, b, proto) => {
			calls.push(`${cookie} ${b.ip}:${b.port}/${proto}`);
			return cookie === 77n && b.ip === '10.244.2.7' && b.port === 8080 && proto === 'TCP' ? 9 : undefined;
		},
	};
	const svc = {
		serviceById: (id: number) =>
			id === 9 ? { namespace: 'y', name: 's', port: 'http', frontend: { vip: '10.96.0.20', port: 80, protocol: 'TCP' as const } } : undefined,
		serviceByFrontend: () => undefined,
	};
	const endpoints = [{ namespace: 'x', pod: 'a', ip: '10.244.1.5', epId: 1, ifindex: 5, netns: '/var/run/netns/cni-a' }];
	let cookieReads = 0;
	const lookups = serviceLookups(
		lb,
		svc,
		() => endpoints,
		(path) => {
			cookieReads++;
			assert.equal(path, '/var/run/netns/cni-a');
			return 77n;
		},
	);
	const index = new FlowIndex('n1', () => 0, lookups);
	const f = toFlow(event({}), index.context());
	assert.deepEqual(f.destination.service, { namespace: 'y', name: 's', port: 'http', vip: '10.96.0.20', vipPort: 80 });
	assert.match(f.summary, /10\.244\.2\.7:8080 \(service y\/s:http\) egress/);
	assert.equal(toFlow(event({ dport: 9090 }), index.context()).destination.service, undefined, 'a direct connection names no Service');
	assert.equal(toFlow(event({ isReply: true }), index.context()).destination.service, undefined, 'replies are not looked up');
	assert.equal(toFlow(event({ src: '10.244.1.99' }), index.context()).destination.service, undefined, 'a client that is not a local pod');
	assert.equal(cookieReads, 1, 'a pod netns cookie is read once');
	assert.ok(calls.every((c) => c.startsWith('77 ')));
});

/** A refusal record as the socket LB programs put it on the ring (weir_sock_event). */
function refusalRecord(over: { cookie?: bigint; vip?: string; port?: number; proto?: number; suppressed?: number } = {}): Buffer {
	return encode('weir_sock_event', {
		ts_ns: 5_000_000n,
		type: EventType.SockDrop,
		direction: 1,
		verdict: 2,
		family: 4,
		reason: DropReason.NO_SERVICE_BACKEND,
		protocol: over.proto ?? 6,
		netns_cookie: over.cookie ?? 77n,
		address: ipv4ToInt(over.vip ?? '10.96.0.30'),
		port: over.port ?? 80,
		service_id: 12,
		suppressed: over.suppressed ?? 0,
	});
}

function refusalLookups(hostCookie = 1n) {
	const lb: SocketLbHandle = { services: () => [], upsertService: () => undefined, deleteService: () => undefined, addressedService: () => undefined };
	const empty = { namespace: 'y', name: 'empty', port: 'http', id: 12, frontend: { vip: '10.96.0.30', port: 80, protocol: 'TCP' as const } };
	const svc = {
		serviceById: () => undefined,
		serviceByFrontend: (f: { vip: string; port: number; protocol: string }) =>
			f.vip === '10.96.0.30' && f.port === 80 && f.protocol === 'TCP' ? empty : undefined,
	};
	const endpoints = [
		{ namespace: 'x', pod: 'a', ip: '10.244.1.5', epId: 1, ifindex: 5, netns: '/var/run/netns/cni-a' },
		{ namespace: 'x', pod: 'gone', ip: '10.244.1.6', epId: 2, ifindex: 6, netns: '/var/run/netns/cni-gone' },
	];
	const cookies: Record<string, bigint> = { '/var/run/netns/cni-a': 77n, '/proc/self/ns/net': hostCookie };
	const reads: string[] = [];
	const lookups = serviceLookups(
		lb,
		svc,
		() => endpoints,
		(path) => {
			reads.push(path);
			const c = cookies[path];
			if (c === undefined) throw new Error(`ENOENT ${path}`);
			return c;
		},
		{ identityOf: (ip) => (ip === '10.244.1.5' ? 300 : undefined) },
	);
	const index = new FlowIndex('n1', (ns) => 1_700_000_000_000 + Number(ns / 1_000_000n), lookups);
	index.update(
		[
			{
				metadata: {
					namespace: 'x',
					name: 'a',
					labels: { app: 'a' },
					ownerReferences: [{ kind: 'ReplicaSet', name: 'a-7c6cf4b867', apiVersion: 'apps/v1', uid: 'u' }],
				},
				spec: { containers: [] },
				status: { phase: 'Running', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }] },
			} as k8s.V1Pod,
		],
		{ rule: () => undefined, isolatedBy: () => [], reservedName: () => undefined },
	);
	return { index, reads };
}

test('a refusal record decodes by its type, and becomes a DROPPED flow that names the pod and the Service', () => {
	const ev = decodeRecord(refusalRecord()) as SockDropEvent;
	assert.equal(ev.type, 'sock-drop');
	assert.deepEqual(
		{ ...ev },
		{
			tsNs: 5_000_000n,
			type: 'sock-drop',
			direction: 'egress',
			verdict: 'DROPPED',
			reason: DropReason.NO_SERVICE_BACKEND,
			reasonName: 'NO_SERVICE_BACKEND',
			protocol: 6,
			netnsCookie: 77n,
			vip: '10.96.0.30',
			port: 80,
			serviceId: 12,
			suppressed: 0,
		},
	);
	// A packet record is still a packet record; unknown types and short records are skipped.
	assert.equal((decodeRecord(encode('weir_event', { type: EventType.Drop, family: 4, saddr: [0x0a000001, 0, 0, 0] })) as DatapathEvent).src, '10.0.0.1');
	assert.equal(decodeRecord(encode('weir_sock_event', { type: 99 })), undefined);
	assert.equal(decodeRecord(refusalRecord().subarray(0, 20)), undefined);
	assert.equal(decodeRecord(Buffer.alloc(4)), undefined);

	const { index } = refusalLookups();
	const f = toFlow(ev, index.context());
	assert.equal(f.verdict, 'DROPPED');
	assert.equal(f.dropReason, 'NO_SERVICE_BACKEND');
	assert.equal(f.dropReasonDesc, 'no ready backend for Service y/empty:http; the connect was refused with ECONNREFUSED');
	assert.equal(f.direction, 'egress');
	assert.equal(f.isReply, false);
	assert.equal(f.protocol, 'TCP');
	assert.equal(f.tcpFlags, undefined, 'no packet, no flags');
	assert.equal(f.time, new Date(1_700_000_000_005).toISOString());
	assert.deepEqual(f.source, { ip: '10.244.1.5', identity: 300, namespace: 'x', pod: 'a', workload: 'a', labels: ['app=a'] });
	assert.deepEqual(f.destination, {
		ip: '10.96.0.30',
		port: 80,
		identity: Identity.Unknown,
		labels: [],
		service: { namespace: 'y', name: 'empty', port: 'http', vip: '10.96.0.30', vipPort: 80 },
	});
	assert.equal(
		f.summary,
		'x/a -> 10.96.0.30:80 (service y/empty:http) egress TCP DROPPED (NO_SERVICE_BACKEND: no ready backend for Service y/empty:http; the connect was refused with ECONNREFUSED)',
	);
	assert.equal(
		formatFlow(f),
		'22:13:20.005 [n1] x/a -> 10.96.0.30:80 (service y/empty:http) egress TCP DROPPED (NO_SERVICE_BACKEND: no ready backend for Service y/empty:http; the connect was refused with ECONNREFUSED)',
	);
	// The observer API's filters and the relay's (weir observe) find it.
	assert.ok(matchesFilter(f, { verdict: 'DROPPED', namespace: 'x', pod: 'x/a', port: 80, protocol: 'TCP' }));
	assert.equal(matchesFilter(f, { verdict: 'FORWARDED' }), false);
	assert.ok(flowMatches(f, toRequest({ verdict: ['DROPPED'], 'drop-reason': ['NO_SERVICE_BACKEND'], 'from-namespace': ['x'], 'to-port': [80] }).filter));
	assert.equal(flowMatches(f, toRequest({ 'from-namespace': ['y'] }).filter), false);
});

test('a refusal names what it can: the count it stands for, a UDP send, the node, an unknown client or Service', () => {
	const { index, reads } = refusalLookups(1n);
	const later = toFlow(decodeRecord(refusalRecord({ suppressed: 41 }))!, index.context());
	assert.equal(later.suppressed, 41);
	assert.match(later.summary, /refused with ECONNREFUSED; 41 more refused since the previous report\)$/);
	assert.match(formatFlow(later), /; 41 more refused since the previous report\)$/);
	assert.equal(toFlow(decodeRecord(refusalRecord())!, index.context()).suppressed, undefined);

	const udp = toFlow(decodeRecord(refusalRecord({ proto: 17, port: 53 }))!, index.context());
	assert.equal(udp.protocol, 'UDP');
	assert.equal(udp.destination.service, undefined, 'no Service has that frontend (any more)');
	assert.equal(udp.dropReasonDesc, 'the Service has no ready backend: the connect was refused (ECONNREFUSED)');

	const host = toFlow(decodeRecord(refusalRecord({ cookie: 1n }))!, index.context());
	assert.deepEqual(host.source, { ip: '', identity: Identity.Host, labels: [], reserved: 'host' });
	assert.match(host.summary, /^host -> 10\.96\.0\.30:80 \(service y\/empty:http\) egress TCP DROPPED/);

	const stranger = toFlow(decodeRecord(refusalRecord({ cookie: 5n }))!, index.context());
	assert.deepEqual(stranger.source, { ip: '', identity: Identity.Unknown, labels: [], reserved: 'netns:5' });
	// Each pod's netns was opened once (the gone one too), whatever the number of refusals.
	assert.deepEqual(reads.filter((r) => r.includes('cni-')).sort(), ['/var/run/netns/cni-a', '/var/run/netns/cni-gone']);

	// Without the socket load balancer (kube-proxy-replacement off) nothing is named, nothing breaks.
	const bare = toFlow(decodeRecord(refusalRecord())!, new FlowIndex('n1', () => 0).context());
	assert.equal(bare.source.reserved, 'netns:77');
	assert.equal(bare.destination.service, undefined);
});
