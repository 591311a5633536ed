// The agent's side of the socket load balancer: where it attaches (the node's cgroup),
// and how a flow names the Service a local client addressed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CgroupError, nodePart, resolveCgroupRoot, unifiedPath } from '../../src/agent/cgroup.js';
import { serviceLookups, type SocketLbHandle } from '../../src/agent/service-lb.js';
import { FlowIndex } from '../../src/observe/flow-index.js';
import { toFlow } from '../../src/observe/flow.js';
import type { DatapathEvent } from '../../src/kernel/codecs.js';

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
