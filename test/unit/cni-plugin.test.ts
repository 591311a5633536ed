// CniPlugin's commands against fakes of its ports (the one place the tests use fakes:
// the ports exist for it): rtnetlink as an in-memory model of the namespaces' links,
// addresses, routes and neighbours; the datapath; IPAM; admission; readiness. The
// endpoint store is the real one on a temporary file. ADD success and its rollback at
// every failure point, DEL idempotence, CHECK, VERSION, STATUS, not-ready and bad
// requests with the spec's codes.
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddrRow, LinkRow, NeighRow, RouteRow, RouteSpec } from '../../src/kernel/netlink.js';
import { SUPPORTED_VERSIONS } from '../../src/cni-plugin/config.js';
import { EndpointStore } from '../../src/cni-plugin/endpoint-store.js';
import { CniCode, CniError } from '../../src/cni-plugin/errors.js';
import type { IpamCall } from '../../src/cni-plugin/ipam.js';
import { CniPlugin, type CniResponse, type DatapathPort, type NetlinkPort } from '../../src/cni-plugin/plugin.js';
import { GATEWAY_IP, hostIfName } from '../../src/cni-plugin/result.js';
import type { LocalEndpoint } from '../../src/shared/endpoint.js';

function nativeError(code: string, op: string): Error {
	return Object.assign(new Error(`${op}: ${code}`), { code, errno: 1, op, log: '' });
}

type NetlinkOp = keyof NetlinkPort;

/** One network namespace of the fake kernel. */
interface FakeNs {
	links: Map<string, LinkRow & { peer?: { ns: string; name: string } }>;
	addrs: AddrRow[];
	routes: RouteRow[];
	neighs: NeighRow[];
	sysctls: Map<string, string>;
}

/** rtnetlink over in-memory namespaces; `fail` makes an operation in a namespace throw. */
class FakeKernel {
	readonly ns = new Map<string, FakeNs>();
	readonly failures: Array<{ op: NetlinkOp; ns: string; err: Error }> = [];
	private ifindex = 10;

	space(name: string): FakeNs {
		let s = this.ns.get(name);
		if (!s) {
			// Every namespace has its loopback.
			const lo = {
				ifindex: 1,
				name: 'lo',
				kind: '',
				mac: '00:00:00:00:00:00',
				mtu: 65536,
				up: false,
				operUp: false,
				peerIfindex: 0,
				linkNetnsid: -1,
				master: 0,
			};
			this.ns.set(name, (s = { links: new Map([['lo', lo]]), addrs: [], routes: [], neighs: [], sysctls: new Map() }));
		}
		return s;
	}

	fail(op: NetlinkOp, ns: string, err = nativeError('ENOMEM', op)): void {
		this.failures.push({ op, ns, err });
	}

	/** The links (but lo), addresses, routes and neighbours left anywhere (sysctls of gone links do not count). */
	leftovers(): string[] {
		const out: string[] = [];
		for (const [name, s] of this.ns) {
			for (const l of s.links.keys()) if (l !== 'lo') out.push(`${name}: link ${l}`);
			for (const a of s.addrs) out.push(`${name}: addr ${a.address}/${a.prefixLen}`);
			for (const r of s.routes) out.push(`${name}: route ${r.dst}`);
			for (const n of s.neighs) out.push(`${name}: neigh ${n.ip}`);
		}
		return out;
	}

	private dropLink(s: FakeNs, name: string): void {
		const l = s.links.get(name);
		if (!l) return;
		s.links.delete(name);
		s.addrs = s.addrs.filter((a) => a.ifindex !== l.ifindex);
		s.routes = s.routes.filter((r) => r.ifindex !== l.ifindex);
		s.neighs = s.neighs.filter((n) => n.ifindex !== l.ifindex);
		if (l.peer) this.dropLink(this.space(l.peer.ns), l.peer.name);
	}

	port(netns: string | undefined): NetlinkPort {
		const where = netns ?? 'host';
		const s = (): FakeNs => this.space(where);
		const check = (op: NetlinkOp): void => {
			const f = this.failures.find((x) => x.op === op && x.ns === where);
			if (f) throw f.err;
		};
		const dev = (name: string): LinkRow => {
			const l = s().links.get(name);
			if (!l) throw nativeError('ENODEV', 'RTM_GETLINK');
			return l;
		};
		const mac = (i: number): string => `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`;
		const row = (name: string, ifindex: number, mtu: number, peer: { ns: string; name: string }): LinkRow & { peer: { ns: string; name: string } } => ({
			ifindex,
			name,
			kind: 'veth',
			mac: mac(ifindex),
			mtu,
			up: false,
			operUp: false,
			peerIfindex: 0,
			linkNetnsid: -1,
			master: 0,
			peer,
		});
		return {
			vethAdd: async (o) => {
				check('vethAdd');
				if (s().links.has(o.name)) throw nativeError('EEXIST', 'RTM_NEWLINK');
				const peerNs = o.peerNetns ?? where;
				if (this.space(peerNs).links.has(o.peerName)) throw nativeError('EEXIST', 'RTM_NEWLINK');
				const mtu = o.mtu ?? 1500;
				s().links.set(o.name, row(o.name, this.ifindex++, mtu, { ns: peerNs, name: o.peerName }));
				this.space(peerNs).links.set(o.peerName, row(o.peerName, this.ifindex++, mtu, { ns: where, name: o.name }));
			},
			linkSet: async (name, o) => {
				check('linkSet');
				const l = dev(name);
				if (o.up !== undefined) l.up = l.operUp = o.up;
			},
			linkDel: async (name) => {
				check('linkDel');
				if (!s().links.has(name)) return false;
				this.dropLink(s(), name);
				return true;
			},
			link: async (name) => {
				check('link');
				const l = s().links.get(name);
				return l ? { ...l } : undefined;
			},
			addrAdd: async (name, cidr) => {
				check('addrAdd');
				const [address, len] = cidr.split('/');
				s().addrs.push({ ifindex: dev(name).ifindex, family: 4, address: address!, prefixLen: Number(len), scope: 0 });
			},
			addrs: async () => {
				check('addrs');
				return [...s().addrs];
			},
			routeAdd: async (r: RouteSpec) => {
				check('routeAdd');
				const row: RouteRow = { family: 4, dst: r.dst, ifindex: dev(r.dev!).ifindex, scope: r.scope ?? 'universe', table: 254, onlink: !!r.onlink };
				if (r.gateway) row.gateway = r.gateway;
				s().routes.push(row);
			},
			routes: async () => {
				check('routes');
				return [...s().routes];
			},
			neighAdd: async (n) => {
				check('neighAdd');
				s().neighs.push({ ifindex: dev(n.dev).ifindex, ip: n.ip, mac: n.mac, permanent: true });
			},
			neighbours: async () => {
				check('neighbours');
				return [...s().neighs];
			},
			sysctl: async (key, value) => {
				check('sysctl');
				s().sysctls.set(key, value);
			},
		};
	}
}

class FakeDatapath implements DatapathPort {
	readonly attached = new Set<number>();
	readonly released: number[] = [];
	readonly deletedEndpoints: string[] = [];
	attachError: Error | undefined;

	attach(ifindex: number): void {
		this.attached.add(ifindex);
	}
	async attachAsync(ifindex: number): Promise<void> {
		if (this.attachError) throw this.attachError;
		this.attached.add(ifindex);
	}
	detach(ifindex: number): void {
		this.attached.delete(ifindex);
	}
	release(ifindex: number): void {
		this.attached.delete(ifindex);
		this.released.push(ifindex);
	}
	deleteEndpoint(ip: string): boolean {
		this.deletedEndpoints.push(ip);
		return true;
	}
	isAttached(ifindex: number): boolean {
		return this.attached.has(ifindex);
	}
}

/** host-local in memory: one address per container id. */
class FakeIpam {
	readonly calls: IpamCall[] = [];
	readonly allocated = new Map<string, string>();
	readonly fail: Partial<Record<IpamCall['command'], Error>> = {};
	result: ((ip: string) => unknown) | undefined;
	private next = 5;

	async exec(call: IpamCall): Promise<unknown> {
		this.calls.push(call);
		const err = this.fail[call.command];
		if (err) throw err;
		const id = call.env['CNI_CONTAINERID']!;
		if (call.command === 'DEL') {
			this.allocated.delete(id); // a missing allocation is no error (host-local's way)
			return {};
		}
		if (call.command !== 'ADD') return {};
		const ip = `10.244.1.${this.next++}`;
		this.allocated.set(id, ip);
		return this.result ? this.result(ip) : { cniVersion: '1.0.0', ips: [{ address: `${ip}/24`, gateway: '10.244.1.1' }] };
	}

	commands(): string[] {
		return this.calls.map((c) => c.command);
	}
}

const CONF = { cniVersion: '1.0.0', name: 'weir', type: 'weir-cni', ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]] } };

interface Fixture {
	dir: string;
	netns: string;
	storeFile: string;
	kernel: FakeKernel;
	datapath: FakeDatapath;
	ipam: FakeIpam;
	store: EndpointStore;
	admitted: LocalEndpoint[];
	admitError: Error | undefined;
	notReady: string | undefined;
	logs: Array<{ level: string; msg: string }>;
	plugin: CniPlugin;
	call(command: string, over?: { env?: Record<string, string>; conf?: object; stdin?: string }): Promise<CniResponse>;
}

let f: Fixture;

beforeEach(() => {
	const dir = mkdtempSync(join(tmpdir(), 'weir-cni-plugin-'));
	const netns = join(dir, 'netns-pod1'); // stands for /run/netns/...: CNI_NETNS must exist
	writeFileSync(netns, '');
	const storeFile = join(dir, 'endpoints.json');
	const kernel = new FakeKernel();
	const datapath = new FakeDatapath();
	const ipam = new FakeIpam();
	const store = new EndpointStore(storeFile);
	const logs: Array<{ level: string; msg: string }> = [];
	const log = (level: string) => (_o: object, msg: string) => void logs.push({ level, msg });
	const fx: Fixture = {
		dir,
		netns,
		storeFile,
		kernel,
		datapath,
		ipam,
		store,
		logs,
		admitted: [],
		admitError: undefined,
		notReady: undefined,
		plugin: undefined as unknown as CniPlugin,
		call: (command, over = {}) =>
			fx.plugin.handle(
				{
					CNI_COMMAND: command,
					CNI_CONTAINERID: 'c1',
					CNI_NETNS: netns,
					CNI_IFNAME: 'eth0',
					CNI_PATH: '/opt/cni/bin',
					CNI_ARGS: 'K8S_POD_NAMESPACE=d-redis;K8S_POD_NAME=redis',
					...over.env,
				},
				over.stdin ?? JSON.stringify(over.conf ?? CONF),
			),
	};
	fx.plugin = new CniPlugin({
		datapath,
		store,
		ipam,
		admit: (ep) => {
			if (fx.admitError) throw fx.admitError;
			fx.admitted.push(ep);
		},
		notReady: () => fx.notReady,
		netlink: (ns) => kernel.port(ns),
		log: { info: log('info'), warn: log('warn'), error: log('error') },
	});
	f = fx;
});

afterEach(() => {
	rmSync(f.dir, { recursive: true, force: true });
});

const HOST_IF = hostIfName('c1', 'eth0');

function error(r: CniResponse): { cniVersion: string; code: number; msg: string; details: string } {
	assert.notEqual(r.code, 0, `expected a failure, got ${r.stdout}`);
	return JSON.parse(r.stdout) as { cniVersion: string; code: number; msg: string; details: string };
}

/** Nothing of the attachment is left: kernel, datapath, IPAM allocation, store (in memory and on disk). */
function assertClean(what: string): void {
	assert.deepEqual(f.kernel.leftovers(), [], `${what}: kernel objects left`);
	assert.deepEqual([...f.datapath.attached], [], `${what}: datapath still attached`);
	assert.deepEqual([...f.ipam.allocated.keys()], [], `${what}: IPAM allocation left`);
	assert.deepEqual(f.store.all(), [], `${what}: store record left`);
	assert.deepEqual(new EndpointStore(f.storeFile).all(), [], `${what}: record left in the state file`);
}

describe('ADD', () => {
	test('wires the pod: veth, /32, gateway, routes, datapath, endpoint; answers the spec result', async () => {
		const r = await f.call('ADD', { conf: { ...CONF, mtu: 1450 } });
		assert.equal(r.code, 0, r.stdout);
		const rec = f.store.get('c1', 'eth0');
		assert.ok(rec);
		assert.equal(rec.state, 'ready');
		assert.equal(rec.ip, '10.244.1.5');
		const host = f.kernel.space('host');
		const pod = f.kernel.space(f.netns);
		const hostLink = host.links.get(HOST_IF)!;
		const podLink = pod.links.get('eth0')!;
		assert.ok(hostLink.up && podLink.up, 'both ends up');
		assert.equal(hostLink.mtu, 1450);
		assert.equal(rec.hostIfindex, hostLink.ifindex);
		assert.deepEqual(
			pod.addrs.map((a) => `${a.address}/${a.prefixLen}@${a.ifindex}`),
			[`10.244.1.5/32@${podLink.ifindex}`],
		);
		assert.deepEqual(pod.neighs, [{ ifindex: podLink.ifindex, ip: GATEWAY_IP, mac: hostLink.mac, permanent: true }]);
		assert.deepEqual(
			pod.routes.map((x) => `${x.dst} via ${x.gateway ?? '-'} ${x.scope}${x.onlink ? ' onlink' : ''}`),
			[`${GATEWAY_IP}/32 via - link`, `0.0.0.0/0 via ${GATEWAY_IP} universe onlink`],
		);
		assert.deepEqual(
			host.routes.map((x) => `${x.dst}@${x.ifindex}`),
			[`10.244.1.5/32@${hostLink.ifindex}`],
		);
		assert.equal(host.sysctls.get(`net/ipv4/conf/${HOST_IF}/rp_filter`), '0');
		assert.equal(host.sysctls.get(`net/ipv4/conf/${HOST_IF}/forwarding`), '1');
		assert.equal(pod.sysctls.get('net/ipv6/conf/eth0/disable_ipv6'), '1');
		assert.deepEqual([...f.datapath.attached], [hostLink.ifindex]);
		assert.deepEqual(f.admitted, [{ namespace: 'd-redis', pod: 'redis', ip: '10.244.1.5', epId: 1, ifindex: hostLink.ifindex }]);
		assert.deepEqual(f.ipam.commands(), ['ADD']);
		assert.deepEqual(f.ipam.calls[0]!.env, {
			CNI_CONTAINERID: 'c1',
			CNI_NETNS: f.netns,
			CNI_IFNAME: 'eth0',
			CNI_ARGS: 'K8S_POD_NAMESPACE=d-redis;K8S_POD_NAME=redis',
		});
		assert.deepEqual(JSON.parse(r.stdout), {
			cniVersion: '1.0.0',
			interfaces: [
				{ name: HOST_IF, mac: hostLink.mac },
				{ name: 'eth0', mac: podLink.mac, sandbox: f.netns },
			],
			ips: [{ address: '10.244.1.5/32', gateway: GATEWAY_IP, interface: 1 }],
			routes: [{ dst: '0.0.0.0/0', gw: GATEWAY_IP }],
		});
		assert.deepEqual(new EndpointStore(f.storeFile).list(), f.store.list(), 'the record is on disk');
	});

	const foreignEth0 = (): void =>
		void f.kernel
			.space(f.netns)
			.links.set('eth0', { ifindex: 99, name: 'eth0', kind: 'dummy', mac: '', mtu: 1500, up: true, operUp: true, peerIfindex: 0, linkNetnsid: -1, master: 0 });
	const failurePoints: Array<{ what: string; inject: () => void; code: number; msg: RegExp; vethMade: boolean; foreign?: true }> = [
		{
			what: 'IPAM ADD fails',
			inject: () => (f.ipam.fail.ADD = new CniError(CniCode.Io, 'IPAM plugin host-local: range full')),
			code: CniCode.Io,
			msg: /range full/,
			vethMade: false,
		},
		{
			what: 'IPAM returns no IPv4 address',
			inject: () => (f.ipam.result = () => ({ cniVersion: '1.0.0', ips: [] })),
			code: CniCode.InvalidConfig,
			msg: /returned 0 IPv4 addresses/,
			vethMade: false,
		},
		{
			what: 'the pod already has the interface',
			inject: foreignEth0,
			code: CniCode.Other,
			msg: /interface eth0 already exists/,
			vethMade: false,
			foreign: true,
		},
		{ what: 'veth creation fails', inject: () => f.kernel.fail('vethAdd', 'host'), code: CniCode.Other, msg: /wiring eth0 .* failed/, vethMade: false },
		{ what: 'a host sysctl fails', inject: () => f.kernel.fail('sysctl', 'host'), code: CniCode.Other, msg: /wiring eth0/, vethMade: true },
		{ what: 'the pod address fails', inject: () => f.kernel.fail('addrAdd', f.netns), code: CniCode.Other, msg: /wiring eth0/, vethMade: true },
		{ what: 'the gateway neighbour fails', inject: () => f.kernel.fail('neighAdd', f.netns), code: CniCode.Other, msg: /wiring eth0/, vethMade: true },
		{ what: 'the pod default route fails', inject: () => f.kernel.fail('routeAdd', f.netns), code: CniCode.Other, msg: /wiring eth0/, vethMade: true },
		{ what: 'the host route fails', inject: () => f.kernel.fail('routeAdd', 'host'), code: CniCode.Other, msg: /wiring eth0/, vethMade: true },
		{
			what: 'the datapath attach fails',
			inject: () => (f.datapath.attachError = nativeError('EBUSY', 'bpf_link_create')),
			code: CniCode.Other,
			msg: /wiring eth0/,
			vethMade: true,
		},
		{ what: 'admission fails', inject: () => (f.admitError = new Error('policy controller crashed')), code: CniCode.Other, msg: /wiring eth0/, vethMade: true },
	];
	for (const p of failurePoints) {
		test(`rollback when ${p.what}: everything done before is undone, IPAM DEL called, the record removed`, async () => {
			p.inject();
			const e = error(await f.call('ADD'));
			assert.equal(e.code, p.code, e.msg);
			assert.match(`${e.msg} ${e.details}`, p.msg);
			assert.equal(e.cniVersion, '1.0.0');
			if (p.foreign) f.kernel.space(f.netns).links.delete('eth0'); // another plugin's (see the next test)
			assertClean(p.what);
			assert.deepEqual(f.ipam.commands(), ['ADD', 'DEL']);
			assert.equal(f.ipam.calls[1]!.env['CNI_CONTAINERID'], 'c1');
			assert.equal(f.datapath.released.length, p.vethMade ? 1 : 0, 'the attachment pins released when a veth existed');
			if (p.what !== 'admission fails') assert.deepEqual(f.admitted, []);
			if (p.what !== 'IPAM ADD fails' && p.what !== 'IPAM returns no IPv4 address') assert.deepEqual(f.datapath.deletedEndpoints, ['10.244.1.5']);
		});
	}

	test('a pod interface that another plugin made survives the rollback', async () => {
		foreignEth0();
		error(await f.call('ADD'));
		assert.deepEqual(f.kernel.leftovers(), [`${f.netns}: link eth0`]);
	});

	test('rollback whose IPAM DEL fails too: the ADD error is answered, the record removed, a warning logged', async () => {
		f.kernel.fail('addrAdd', f.netns);
		f.ipam.fail.DEL = new CniError(CniCode.Io, 'IPAM plugin host-local: cannot run');
		const e = error(await f.call('ADD'));
		assert.match(e.msg, /wiring eth0/);
		assert.deepEqual(f.store.all(), []);
		assert.deepEqual(f.kernel.leftovers(), []);
		assert.ok(f.logs.some((l) => l.level === 'warn' && /IPAM DEL during rollback failed/.test(l.msg)));
	});

	test('the agent not ready: code 11, nothing touched', async () => {
		f.notReady = 'starting';
		const e = error(await f.call('ADD'));
		assert.equal(e.code, CniCode.TryAgainLater);
		assert.match(e.msg, /try again later/);
		assert.equal(e.details, 'starting');
		assert.deepEqual(f.ipam.calls, []);
		assertClean('not ready');
	});
});

describe('DEL', () => {
	test('after ADD removes everything; a second DEL succeeds too', async () => {
		assert.equal((await f.call('ADD')).code, 0);
		const ifindex = f.store.get('c1', 'eth0')!.hostIfindex;
		const r = await f.call('DEL');
		assert.deepEqual(r, { code: 0, stdout: '' });
		assertClean('DEL');
		assert.deepEqual(f.datapath.released, [ifindex]);
		assert.deepEqual(f.datapath.deletedEndpoints, ['10.244.1.5']);
		assert.deepEqual(await f.call('DEL'), { code: 0, stdout: '' });
		assert.deepEqual(f.ipam.commands(), ['ADD', 'DEL', 'DEL'], 'an unknown attachment still gets its IPAM DEL');
	});

	test('missing netns, link and allocation are success', async () => {
		assert.equal((await f.call('ADD')).code, 0);
		// The sandbox is gone: its netns with the veth pair, and the runtime sends no netns.
		f.kernel.ns.delete(f.netns);
		await f.kernel.port(undefined).linkDel(HOST_IF);
		rmSync(f.netns);
		f.ipam.allocated.clear();
		assert.deepEqual(await f.call('DEL', { env: { CNI_NETNS: '' } }), { code: 0, stdout: '' });
		assertClean('DEL of a gone sandbox');
		// Never added at all, while the agent is not ready either.
		f.notReady = 'stopping';
		assert.deepEqual(await f.call('DEL', { env: { CNI_CONTAINERID: 'never-added', CNI_NETNS: '' } }), { code: 0, stdout: '' });
	});

	test('a failing IPAM DEL fails the DEL and keeps the record, so the retry releases the address', async () => {
		assert.equal((await f.call('ADD')).code, 0);
		f.ipam.fail.DEL = new CniError(CniCode.Io, 'IPAM plugin host-local: busy');
		assert.equal(error(await f.call('DEL')).code, CniCode.Io);
		assert.equal(f.store.all().length, 1, 'record kept for the retry');
		delete f.ipam.fail.DEL;
		assert.equal((await f.call('DEL')).code, 0);
		assertClean('DEL retried');
	});
});

describe('CHECK', () => {
	async function added(): Promise<object> {
		const r = await f.call('ADD');
		assert.equal(r.code, 0);
		return { ...CONF, prevResult: JSON.parse(r.stdout) };
	}

	test('a wired pod passes, IPAM CHECK included', async () => {
		const conf = await added();
		assert.deepEqual(await f.call('CHECK', { conf }), { code: 0, stdout: '' });
		assert.deepEqual(f.ipam.commands(), ['ADD', 'CHECK']);
	});

	test('drift is named', async () => {
		const conf = await added();
		const pod = f.kernel.space(f.netns);
		const host = f.kernel.space('host');
		const cases: Array<[string, () => () => void, RegExp]> = [
			[
				'default route',
				() => {
					const saved = pod.routes;
					pod.routes = pod.routes.filter((r) => r.dst !== '0.0.0.0/0');
					return () => (pod.routes = saved);
				},
				/default route via 169\.254\.1\.1 dev eth0 is missing/,
			],
			[
				'pod address',
				() => {
					const saved = pod.addrs;
					pod.addrs = [];
					return () => (pod.addrs = saved);
				},
				/address 10\.244\.1\.5\/32 is missing on eth0/,
			],
			[
				'gateway neighbour',
				() => {
					const saved = pod.neighs;
					pod.neighs = [];
					return () => (pod.neighs = saved);
				},
				/gateway neighbour entry is missing/,
			],
			[
				'host route',
				() => {
					const saved = host.routes;
					host.routes = [];
					return () => (host.routes = saved);
				},
				/host route 10\.244\.1\.5\/32 dev lxc[0-9a-f]{12} is missing/,
			],
			[
				'datapath',
				() => {
					const i = [...f.datapath.attached][0]!;
					f.datapath.attached.clear();
					return () => f.datapath.attached.add(i);
				},
				/datapath programs are not attached/,
			],
		];
		for (const [what, breakIt, msg] of cases) {
			const restore = breakIt();
			const e = error(await f.call('CHECK', { conf }));
			assert.equal(e.code, CniCode.Other, what);
			assert.match(e.msg, msg, what);
			restore();
			assert.equal((await f.call('CHECK', { conf })).code, 0, `${what} restored`);
		}
	});

	test('unknown container is code 3, no prevResult code 7, not ready code 11', async () => {
		const conf = await added();
		assert.equal(error(await f.call('CHECK', { conf, env: { CNI_CONTAINERID: 'other' } })).code, CniCode.UnknownContainer);
		assert.equal(error(await f.call('CHECK')).code, CniCode.InvalidConfig);
		f.notReady = 'restarting';
		assert.equal(error(await f.call('CHECK', { conf })).code, CniCode.TryAgainLater);
	});
});

describe('VERSION, STATUS and bad requests', () => {
	test('VERSION answers the supported versions in the asked version, else the latest', async () => {
		const v = await f.call('VERSION', { stdin: JSON.stringify({ cniVersion: '1.0.0' }) });
		assert.deepEqual(JSON.parse(v.stdout), { cniVersion: '1.0.0', supportedVersions: [...SUPPORTED_VERSIONS] });
		assert.equal(JSON.parse((await f.call('VERSION', { stdin: JSON.stringify({ cniVersion: '0.3.1' }) })).stdout).cniVersion, '1.1.0');
		const bare = await f.plugin.handle({ CNI_COMMAND: 'VERSION' }, '');
		assert.equal(bare.code, 0);
		assert.equal(JSON.parse(bare.stdout).cniVersion, '1.1.0');
	});

	test('STATUS: ready is success, not ready is code 50', async () => {
		assert.deepEqual(await f.call('STATUS'), { code: 0, stdout: '' });
		f.notReady = 'starting';
		assert.equal(error(await f.call('STATUS')).code, CniCode.NotAvailable);
	});

	test('bad configuration and environment get the spec codes, and nothing is touched', async () => {
		const cases: Array<[string, Parameters<Fixture['call']>[1], number]> = [
			['not JSON', { stdin: '{"cniVersion": "1.0.0",' }, CniCode.Decode],
			['unsupported cniVersion', { conf: { ...CONF, cniVersion: '0.3.1' } }, CniCode.IncompatibleVersion],
			['no ipam', { conf: { ...CONF, ipam: undefined } }, CniCode.InvalidConfig],
			['bad mtu', { conf: { ...CONF, mtu: 10 } }, CniCode.InvalidConfig],
			['no container id', { env: { CNI_CONTAINERID: '' } }, CniCode.InvalidEnv],
			['netns that does not exist', { env: { CNI_NETNS: join(f.dir, 'gone') } }, CniCode.InvalidEnv],
		];
		for (const [what, over, code] of cases) {
			const e = error(await f.call('ADD', over));
			assert.equal(e.code, code, `${what}: ${e.msg}`);
			assert.equal(typeof e.msg, 'string');
		}
		assert.equal(
			error(await f.call('ADD', { conf: { ...CONF, cniVersion: '0.4.0', ipam: undefined } })).cniVersion,
			'0.4.0',
			'errors answer in the request version',
		);
		assert.deepEqual(f.ipam.calls, []);
		assertClean('bad requests');
	});
});
