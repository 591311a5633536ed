// The addon's rtnetlink calls in real network namespaces: a veth born with its peer in
// another netns, links, addresses, routes, neighbours, policy-routing rules and
// per-netns sysctls read back with iproute2 and the addon's own dumps; the capture's
// IP_TRANSPARENT sockets made in a namespace; errors carry errno names.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Socket, createServer } from 'node:net';
import { Netlink, isNativeError } from '../../src/kernel/netlink.js';
import { transparentConnectFd, transparentListenerFd } from '../../src/kernel/capture.js';
import { sh } from '../../hack/lab/topology.js';

const id = `${process.pid % 100000}`;
const hostNs = `wnl-${id}-host`;
const podNs = `wnl-${id}-pod`;
const host = new Netlink(`/run/netns/${hostNs}`);
const pod = new Netlink(`/run/netns/${podNs}`);

describe('rtnetlink through the addon', () => {
	before(() => {
		assert.equal(process.getuid?.(), 0, 'the kernel tier needs root');
		sh('ip', ['netns', 'add', hostNs]);
		sh('ip', ['netns', 'add', podNs]);
	});
	after(() => {
		sh('ip', ['netns', 'del', podNs], { allowFail: true });
		sh('ip', ['netns', 'del', hostNs], { allowFail: true });
	});

	test('veth with its peer created inside another netns, configured and read back', async () => {
		await host.vethAdd({ name: 'lxctest0', peerName: 'eth0', peerNetns: `/run/netns/${podNs}`, mtu: 1400 });
		const h = await host.link('lxctest0');
		const p = await pod.link('eth0');
		assert.ok(h && p, 'both ends exist, each in its netns');
		assert.equal(h.kind, 'veth');
		assert.equal(h.mtu, 1400);
		assert.equal(await host.link('eth0'), undefined, 'the peer never appeared on the host side');
		assert.equal(p.peerIfindex, h.ifindex);

		await host.linkSet('lxctest0', { up: true, mac: '02:00:00:00:00:01' });
		await pod.linkSet('eth0', { up: true });
		await pod.addrAdd('eth0', '10.9.0.5/32');
		await pod.neighAdd({ dev: 'eth0', ip: '169.254.1.1', mac: '02:00:00:00:00:01' });
		await pod.routeAdd({ dst: '169.254.1.1/32', dev: 'eth0', scope: 'link' });
		await pod.routeAdd({ dst: '0.0.0.0/0', gateway: '169.254.1.1', dev: 'eth0', onlink: true });
		await host.routeAdd({ dst: '10.9.0.5/32', dev: 'lxctest0', scope: 'link' });
		await pod.sysctl('net.ipv4.conf.eth0.rp_filter', '2');

		assert.equal((await host.link('lxctest0'))!.mac, '02:00:00:00:00:01');
		assert.ok((await pod.addrs()).some((a) => a.address === '10.9.0.5' && a.prefixLen === 32));
		const routes = await pod.routes();
		assert.ok(routes.some((r) => r.dst === '0.0.0.0/0' && r.gateway === '169.254.1.1' && r.onlink));
		assert.ok(routes.some((r) => r.dst === '169.254.1.1/32' && r.scope === 'link'));
		assert.ok((await host.routes()).some((r) => r.dst === '10.9.0.5/32' && r.ifindex === h.ifindex));
		const n = (await pod.neighbours()).find((x) => x.ip === '169.254.1.1');
		assert.deepEqual({ mac: n?.mac, permanent: n?.permanent }, { mac: '02:00:00:00:00:01', permanent: true });
		assert.equal(await pod.readSysctl('net.ipv4.conf.eth0.rp_filter'), '2');
		// iproute2 agrees.
		assert.match(sh('ip', ['-n', podNs, 'route', 'show', 'default']), /default via 169\.254\.1\.1 dev eth0 onlink/);
		assert.match(sh('ip', ['-n', podNs, 'neigh', 'show', '169.254.1.1']), /lladdr 02:00:00:00:00:01 PERMANENT/);
		// The sysctl was the pod netns's, not the host's.
		assert.equal(sh('ip', ['netns', 'exec', hostNs, 'cat', '/proc/sys/net/ipv4/conf/all/forwarding']).trim(), '0');
	});

	test('deletes are idempotent; errors carry errno names', async () => {
		assert.equal(await pod.routeDel({ dst: '0.0.0.0/0', gateway: '169.254.1.1', dev: 'eth0' }), true);
		assert.equal(await pod.routeDel({ dst: '0.0.0.0/0', gateway: '169.254.1.1', dev: 'eth0' }), false);
		assert.equal(await pod.addrDel('eth0', '10.9.0.5/32'), true);
		assert.equal(await pod.addrDel('eth0', '10.9.0.5/32'), false);
		await assert.rejects(host.vethAdd({ name: 'lxctest0', peerName: 'x0' }), (e) => isNativeError(e, 'EEXIST'));
		await assert.rejects(pod.addrAdd('nosuchdev', '10.9.0.6/32'), (e) => isNativeError(e, 'ENODEV'));
		await assert.rejects(pod.sysctl('kernel.hostname', 'x'), (e) => isNativeError(e, 'EINVAL'));
		await assert.rejects(new Netlink('/run/netns/does-not-exist').links(), (e) => isNativeError(e, 'ENOENT'));
		assert.equal(await host.linkDel('lxctest0'), true);
		assert.equal(await host.linkDel('lxctest0'), false);
		assert.equal(await pod.link('eth0'), undefined, 'the peer went with the pair');
	});

	test('fwmark rules and a local default route in a table of their own, idempotent, as iproute2 shows them', async () => {
		const rule = { priority: 91, fwmark: 0x0e00, fwmask: 0x0f00, table: 2051 };
		const local = { dst: '0.0.0.0/0', dev: 'lo', type: 'local', table: 2051 } as const;
		await host.linkSet('lo', { up: true });
		await host.routeAdd(local);
		assert.equal(await host.ruleAdd(rule), true);
		assert.equal(await host.ruleAdd(rule), false, 'the same rule again changes nothing');
		assert.deepEqual(
			(await host.rules()).filter((r) => r.table === 2051),
			[{ ...rule, action: 'lookup' }],
		);
		assert.match(sh('ip', ['-n', hostNs, 'rule', 'show', 'pref', '91']), /91:\s+from all fwmark 0xe00\/0xf00 lookup 2051/);
		assert.match(sh('ip', ['-n', hostNs, 'route', 'show', 'table', '2051']), /^local default dev lo scope host/m);
		const routes = await host.routes(2051);
		assert.deepEqual(
			routes.map((r) => [r.dst, r.type, r.scope]),
			[['0.0.0.0/0', 'local', 'host']],
		);
		assert.deepEqual(await host.routes(), [], 'the main table is not touched');
		assert.equal(await host.ruleDel(rule), true);
		assert.equal(await host.ruleDel(rule), false);
		assert.equal(await host.routeDel(local), true);
		assert.equal(await host.routeDel(local), false);
		await assert.rejects(
			async () => host.ruleAdd({ ...rule, fwmark: 0 }),
			(e) => isNativeError(e, 'EINVAL'),
		);
		await assert.rejects(
			async () => host.routeAdd({ ...local, type: 'blackhole' as 'local' }),
			(e) => isNativeError(e, 'EINVAL'),
		);
	});

	// A foreign source address (one no interface has) needs the capture's steering for
	// the answers to come back: ztunnel-capture.test.ts shows it with pods.
	test('IP_TRANSPARENT sockets made in a namespace, marked: Node listens on one and talks over another', async () => {
		const netns = `/run/netns/${hostNs}`;
		await host.addrAdd('lo', '10.9.9.1/32');
		const fd = transparentListenerFd({ address: '10.9.9.1', port: 15001, mark: 0x539, netns });
		const seen: string[] = [];
		const server = createServer((s) => {
			seen.push(`${s.remoteAddress} -> ${s.localAddress}:${s.localPort}`);
			s.end('hi\n');
		});
		await new Promise<void>((r) => server.listen({ fd }, r));
		try {
			assert.match(sh('ip', ['netns', 'exec', hostNs, 'ss', '-Hltn', 'sport = 15001']), /10\.9\.9\.1:15001/);
			const cfd = await transparentConnectFd({ source: '10.9.9.1', sourcePort: 40001, address: '10.9.9.1', port: 15001, mark: 0x539, netns });
			const c = new Socket({ fd: cfd, readable: true, writable: true });
			const got = await new Promise<string>((r) => c.once('data', (d: Buffer) => r(d.toString())));
			c.destroy();
			assert.equal(got, 'hi\n');
			assert.deepEqual(seen, ['10.9.9.1 -> 10.9.9.1:15001']);
			assert.match(sh('ip', ['netns', 'exec', hostNs, 'ss', '-Hltne', 'sport = 15001']), /fwmark:0x539/, 'the listener carries the mark');
			// Errors: the port is taken; nobody listens; a bad address.
			assert.throws(
				() => transparentListenerFd({ address: '10.9.9.1', port: 15001, netns }),
				(e) => isNativeError(e, 'EADDRINUSE') && e.op === 'bind',
			);
			await assert.rejects(
				transparentConnectFd({ source: '10.9.9.1', address: '10.9.9.1', port: 15002, netns }),
				(e) => isNativeError(e, 'ECONNREFUSED') && e.op === 'connect',
			);
			assert.throws(
				() => transparentListenerFd({ address: 'nowhere', port: 1 }),
				(e) => isNativeError(e, 'EINVAL'),
			);
		} finally {
			await new Promise((r) => server.close(r));
		}
	});
});
