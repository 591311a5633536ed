// Real-kernel tests of the socket load balancer (native/bpf/sock_lb.bpf.c through
// src/kernel/service-lb.ts) with real sockets: client processes join a cgroup v2
// directory the programs are attached to, backends are identifying servers in lab
// namespaces, and the ClusterIPs (198.19.0.0/24) belong to no interface: the node
// routes them to a "sink" pod that takes the whole range as local, so a connect that
// is not translated is answered by the sink and shows it. Refusals are read off the
// events ring through a Datapath on the same pin root, as the agent reads them: one
// ring for the pod programs and the socket hooks. Needs root; removes every
// namespace, process, cgroup and pin it made, also on failure.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SocketLb, SocketLbConfig, SocketLbError, netnsCookie, type Backend, type Frontend } from '../../src/kernel/service-lb.js';
import { Datapath, removePinRoot, uninstallPins } from '../../src/kernel/datapath.js';
import type { DatapathRecord, SockDropEvent } from '../../src/kernel/codecs.js';
import { serviceLookups } from '../../src/agent/service-lb.js';
import { FlowIndex } from '../../src/observe/flow-index.js';
import { toFlow } from '../../src/observe/flow.js';
import type * as k8s from '@kubernetes/client-node';
import { native, type NativeError } from '../../src/kernel/addon.js';
import { DropReason, MapName, REASON_MAX, Structs, encode, decode } from '../../src/kernel/layout.js';
import { ipv4ToInt } from '../../src/shared/ipv4.js';
import { buildPath } from '../../src/shared/package.js';
import { ensureBpffs, requireRoot, testPinRoot } from '../helpers/bpf.js';
import { LbLab, type LbClient } from '../helpers/lb-lab.js';

const VIP = '198.19.0.10';
const EMPTY_VIP = '198.19.0.11';
const STICKY_VIP = '198.19.0.12';
const SINK_RANGE = '198.19.0.0/24';
const POD = { client: '10.212.0.10', client2: '10.212.0.11', b1: '10.212.0.21', b2: '10.212.0.22', sink: '10.212.0.30' } as const;
const WEB = 8080;
const DNS = 5353;
const B1 = (port: number): Backend => ({ ip: POD.b1, port });
const B2 = (port: number): Backend => ({ ip: POD.b2, port });

const S_WEB = { id: 1, frontend: { vip: VIP, port: 80, protocol: 'TCP' } as Frontend, backends: [B1(WEB), B2(WEB)], affinitySec: 0 };
const S_DNS = { id: 2, frontend: { vip: VIP, port: 53, protocol: 'UDP' } as Frontend, backends: [B1(DNS), B2(DNS)], affinitySec: 0 };
const S_EMPTY = { id: 3, frontend: { vip: EMPTY_VIP, port: 80, protocol: 'TCP' } as Frontend, backends: [], affinitySec: 0 };
const S_EMPTY_UDP = { id: 4, frontend: { vip: EMPTY_VIP, port: 53, protocol: 'UDP' } as Frontend, backends: [], affinitySec: 0 };
const S_STICKY = { id: 5, frontend: { vip: STICKY_VIP, port: 80, protocol: 'TCP' } as Frontend, backends: [B1(WEB), B2(WEB)], affinitySec: 600 };

interface CgroupProg {
	id: number;
	attach_type: string;
	name: string;
}

function cgroupProgs(cgroup: string): CgroupProg[] {
	const out = execFileSync('bpftool', ['cgroup', 'show', cgroup, '-j'], { encoding: 'utf8' }).trim();
	return (JSON.parse(out || '[]') as CgroupProg[]).sort((a, b) => a.attach_type.localeCompare(b.attach_type));
}

/** The kernel's ids of the links pinned for a cgroup, by hook, and their programs. */
function pinnedLinks(pinRoot: string, cgroup: string): Record<string, { id: number; prog_id: number }> {
	const dir = join(pinRoot, 'cgroup-links', encodeURIComponent(cgroup));
	const out: Record<string, { id: number; prog_id: number }> = {};
	for (const hook of ['connect4', 'sendmsg4', 'recvmsg4', 'getpeername4']) {
		const l = JSON.parse(execFileSync('bpftool', ['link', 'show', 'pinned', join(dir, hook), '-j'], { encoding: 'utf8' })) as { id: number; prog_id: number };
		out[hook] = { id: l.id, prog_id: l.prog_id };
	}
	return out;
}

/** Asserts fn throws a SocketLbError with this code; returns it. */
function lbError(fn: () => unknown, code: string): SocketLbError {
	try {
		fn();
	} catch (e) {
		assert.ok(e instanceof SocketLbError, `expected a SocketLbError, got ${String(e)}`);
		assert.equal(e.code, code, e.message);
		return e;
	}
	assert.fail(`expected a thrown ${code}`);
}

/** Per-CPU counters of one drop reason for packets sent (direction egress), summed. */
function refusedCount(pinRoot: string): bigint {
	const m = native().openPinnedMap(join(pinRoot, MapName.metrics));
	const idx = Buffer.alloc(4);
	idx.writeUInt32LE((-DropReason.NO_SERVICE_BACKEND << 1) | 1);
	const raw = m.lookup(idx);
	m.close();
	let n = 0n;
	for (let off = 0; raw && off + Structs.weir_metrics_value.size <= raw.length; off += Structs.weir_metrics_value.size) n += raw.readBigUInt64LE(off);
	return n;
}

function servers(answers: ReadonlyArray<{ server?: string }>): Set<string | undefined> {
	return new Set(answers.map((a) => a.server));
}

/** Waits until `pred` holds over the collected records, or fails with what came. */
async function until(records: readonly DatapathRecord[], pred: () => boolean, what: string, ms = 3000): Promise<void> {
	const deadline = Date.now() + ms;
	while (!pred()) {
		if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms; ${records.length} records`);
		await new Promise((r) => setTimeout(r, 20));
	}
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('socket load balancer (real kernel, real sockets)', () => {
	let lab: LbLab;
	let lb: SocketLb;
	let client: LbClient;
	/** the pod programs' side of the same pin root: its subscription reads the shared events ring */
	let dp: Datapath | undefined;
	let stopEvents: (() => void) | undefined;
	const records: DatapathRecord[] = [];
	const refusals = (cookieOf: bigint, vip: string, port: number, proto: number): SockDropEvent[] =>
		records.filter((r): r is SockDropEvent => r.type === 'sock-drop' && r.netnsCookie === cookieOf && r.vip === vip && r.port === port && r.protocol === proto);
	const pinRoot = testPinRoot('lb');
	const scratch: string[] = [];

	const open = (extra: { cgroupPath?: string; config?: Partial<SocketLbConfig> } = {}): Promise<SocketLb> => SocketLb.open({ pinRoot, ...extra });
	const cookie = (pod: string): bigint => netnsCookie(`/run/netns/${lab.pod(pod).netns}`);

	before(async () => {
		requireRoot();
		ensureBpffs();
		assert.ok(DropReason.NO_SERVICE_BACKEND > -REASON_MAX);
		lab = await LbLab.create(
			'lb',
			Object.entries(POD).map(([name, ip]) => ({ name, ip })),
		);
		lab.sink(lab.pod('sink'), SINK_RANGE);
		await Promise.all([lab.ident(lab.pod('b1'), 'b1', [WEB, DNS]), lab.ident(lab.pod('b2'), 'b2', [WEB, DNS]), lab.ident(lab.pod('sink'), 'sink', [80, 53])]);
		lb = await open({ cgroupPath: lab.cgroup });
		for (const s of [S_WEB, S_DNS, S_EMPTY, S_EMPTY_UDP, S_STICKY]) lb.upsertService(s);
		dp = await Datapath.open({ pinRoot });
		stopEvents = dp.subscribe((r) => records.push(r));
		client = lab.client(lab.pod('client'), { inCgroup: true });
	});

	after(async () => {
		try {
			stopEvents?.();
			dp?.close();
			lb?.close();
		} finally {
			try {
				if (existsSync(pinRoot)) uninstallPins(pinRoot);
			} finally {
				for (const p of scratch) removePinRoot(p);
				await lab?.destroy();
			}
		}
	});

	it('loads through the verifier in every load-time configuration, with the map sizes asked for', async () => {
		for (const udp of [true, false]) {
			for (const tcpReverse of [true, false]) {
				for (const flowRecords of [true, false]) {
					for (const refuseIntervalMs of [1000, 0]) {
						const root = testPinRoot('lb-cfg');
						scratch.push(root);
						const l = await SocketLb.open({ pinRoot: root, config: { udp, tcpReverse, flowRecords, refuseIntervalMs } });
						assert.deepEqual(l.services(), []);
						l.close();
					}
				}
			}
		}
		// A bad setting is refused before anything is made.
		const refused = testPinRoot('lb-cfg');
		scratch.push(refused);
		await assert.rejects(SocketLb.open({ pinRoot: refused, config: { refuseIntervalMs: -1 } }), /refuseIntervalMs must be an integer/);
		assert.equal(existsSync(refused), false);
		const root = testPinRoot('lb-size');
		scratch.push(root);
		const sized = {
			servicesMaxEntries: 1000,
			reverseMaxEntries: 2000,
			affinityMaxEntries: 3000,
			addressedMaxEntries: 4000,
			refusedMaxEntries: 5000,
			sourcesMaxEntries: 6000,
		};
		(await SocketLb.open({ pinRoot: root, config: sized })).close();
		const size = (name: string): number => {
			const m = native().openPinnedMap(join(root, name));
			const n = m.maxEntries;
			m.close();
			return n;
		};
		assert.deepEqual(
			[MapName.lb4Services, MapName.lb4Reverse, MapName.lb4Affinity, MapName.lb4Addressed, MapName.lb4Refused, MapName.lbSources].map(size),
			[1000, 2000, 3000, 4000, 5000, 6000],
		);
		// A pinned map of another size is not silently replaced (its Services would vanish).
		await assert.rejects(SocketLb.open({ pinRoot: root, config: { ...sized, servicesMaxEntries: 1001 } }), (e: SocketLbError) => {
			assert.equal(e.code, 'WEIR_ERR_LB_MAP_SIZE');
			assert.match(e.message, /weir_lb4_services is pinned with 1000 entries but the configuration asks for 1001/);
			return true;
		});
	});

	it('has no BPF_PROG_TEST_RUN for cgroup sock_addr programs on this kernel (ENOTSUPP), so real sockets test them', async () => {
		const o = native().openObject(buildPath('bpf/sock_lb.bpf.o'));
		try {
			await o.load();
			for (const p of ['weir_sock_connect4', 'weir_sock_sendmsg4', 'weir_sock_recvmsg4', 'weir_sock_getpeername4']) {
				assert.throws(
					() => o.program(p).testRun({ data: Buffer.alloc(64), ctx: Buffer.alloc(80) }),
					(e: NativeError) => e.code === 'ENOTSUPP' && e.op === 'bpf_prog_test_run_opts',
					p,
				);
			}
		} finally {
			o.close();
		}
	});

	it('attaches the four programs to the cgroup through pinned links', () => {
		assert.deepEqual(
			cgroupProgs(lab.cgroup).map((p) => p.attach_type),
			['cgroup_inet4_connect', 'cgroup_inet4_getpeername', 'cgroup_udp4_recvmsg', 'cgroup_udp4_sendmsg'],
		);
		assert.deepEqual(lb.attachedCgroups(), [lab.cgroup]);
		assert.deepEqual(lb.services(), [S_WEB, S_DNS, S_EMPTY, S_EMPTY_UDP, S_STICKY]);
	});

	it('sends a TCP connect to a ClusterIP to a backend that sees the real client; getpeername() reports the ClusterIP', async () => {
		const answers = [];
		for (let i = 0; i < 40; i++) answers.push(await client.tcp(VIP, 80));
		for (const a of answers) {
			assert.ok(a.ok, JSON.stringify(a));
			assert.ok(a.server === 'b1' || a.server === 'b2', JSON.stringify(a));
			assert.equal(a.peer, `${VIP}:80`, 'getpeername() of the client socket');
			assert.equal(a.seen, a.local, 'the backend sees the client address and port');
			assert.match(a.local!, new RegExp(`^${POD.client.replace(/\./g, '\\.')}:`));
		}
		assert.deepEqual(servers(answers), new Set(['b1', 'b2']), 'over 40 connects both backends are used');
	});

	it('answers UDP from the ClusterIP (what a DNS client checks), and a socket keeps its backend', async () => {
		const used = new Set<string>();
		for (let i = 0; i < 12; i++) {
			const a = await client.udp(VIP, 53, { count: 3 });
			assert.ok(a.ok, JSON.stringify(a));
			assert.equal(a.replies.length, 3);
			for (const r of a.replies) {
				assert.equal(r.from, `${VIP}:53`, 'recvfrom() reports the ClusterIP as the source');
				assert.match(r.seen, new RegExp(`^${POD.client.replace(/\./g, '\\.')}:`));
			}
			assert.equal(new Set(a.replies.map((r) => r.server)).size, 1, `one socket, one backend: ${JSON.stringify(a.replies)}`);
			used.add(a.replies[0]!.server);
		}
		assert.deepEqual(used, new Set(['b1', 'b2']), 'sockets are spread over both backends');
	});

	it('refuses a connect or send to a frontend with no backend at once, with ECONNREFUSED, and counts it', async () => {
		const before = refusedCount(pinRoot);
		const t = await client.tcp(EMPTY_VIP, 80, 3000);
		assert.equal(t.ok, false);
		assert.equal(t.code, 'ECONNREFUSED', JSON.stringify(t));
		assert.ok(t.ms < 500, `refused after ${t.ms} ms`);
		const u = await client.udp(EMPTY_VIP, 53, { timeout: 3000 });
		assert.equal(u.code, 'ECONNREFUSED', JSON.stringify(u));
		assert.equal(refusedCount(pinRoot), before + 2n, 'WEIR_DROP_NO_SERVICE_BACKEND counted once per refusal');
		// Not translated, the same address would have reached the sink: the refusal is the LB's.
		const direct = await lab.client(lab.pod('client'), { inCgroup: false }).tcp(EMPTY_VIP, 80);
		assert.equal(direct.server, 'sink', JSON.stringify(direct));
	});

	it('reports a refusal on the shared events ring: the client netns cookie, the frontend, the Service id', async () => {
		const other = lab.client(lab.pod('client2'), { inCgroup: true });
		const c2 = cookie('client2');
		const t0 = process.hrtime.bigint();
		assert.equal((await other.tcp(EMPTY_VIP, 80)).code, 'ECONNREFUSED');
		assert.equal((await other.udp(EMPTY_VIP, 53)).code, 'ECONNREFUSED');
		// A process of the same pod outside the cgroup is not the load balancer's: no record.
		assert.equal((await lab.client(lab.pod('client2'), { inCgroup: false }).tcp(EMPTY_VIP, 80)).server, 'sink');
		await until(records, () => refusals(c2, EMPTY_VIP, 53, 17).length > 0, 'the UDP refusal');
		await sleep(100);
		const [tcp, ...moreTcp] = refusals(c2, EMPTY_VIP, 80, 6);
		assert.deepEqual(moreTcp, [], 'one refusal, one record');
		assert.ok(tcp && tcp.tsNs >= t0 && tcp.tsNs <= process.hrtime.bigint(), `recorded now (CLOCK_MONOTONIC): ${tcp?.tsNs} vs ${t0}`);
		assert.deepEqual(
			{ ...tcp, tsNs: 0n },
			{
				tsNs: 0n,
				type: 'sock-drop',
				direction: 'egress',
				verdict: 'DROPPED',
				reason: DropReason.NO_SERVICE_BACKEND,
				reasonName: 'NO_SERVICE_BACKEND',
				protocol: 6,
				netnsCookie: c2,
				vip: EMPTY_VIP,
				port: 80,
				serviceId: S_EMPTY.id,
				suppressed: 0,
			},
		);
		const [udp, ...moreUdp] = refusals(c2, EMPTY_VIP, 53, 17);
		assert.deepEqual(moreUdp, []);
		assert.deepEqual([udp!.serviceId, udp!.suppressed, udp!.reasonName], [S_EMPTY_UDP.id, 0, 'NO_SERVICE_BACKEND']);
		assert.equal(
			records.filter((r) => r.type === 'sock-drop' && r.netnsCookie === c2).length,
			2,
			'nothing else from that namespace: translated connects and outside processes make no record',
		);

		// As the agent names it: the pod whose netns has that cookie, the Service of that frontend.
		const netnsPath = `/run/netns/${lab.pod('client2').netns}`;
		const index = new FlowIndex(
			'lab',
			() => 0,
			serviceLookups(
				lb,
				{
					serviceById: () => undefined,
					serviceByFrontend: (f) => (f.vip === EMPTY_VIP && f.port === 80 ? { namespace: 'y', name: 'empty', port: 'http', id: 3, frontend: f } : undefined),
				},
				() => [{ namespace: 'x', pod: 'client2', ip: POD.client2, epId: 2, ifindex: 2, netns: netnsPath }],
				netnsCookie,
			),
		);
		index.update([{ metadata: { namespace: 'x', name: 'client2' }, spec: { containers: [] }, status: { podIP: POD.client2 } } as k8s.V1Pod], {
			rule: () => undefined,
			isolatedBy: () => [],
			reservedName: () => undefined,
		});
		const flow = toFlow(tcp!, index.context());
		assert.match(
			flow.summary,
			new RegExp(
				`^x/client2 -> ${EMPTY_VIP.replace(/\./g, '\\.')}:80 \\(service y/empty:http\\) egress TCP DROPPED \\(NO_SERVICE_BACKEND: no ready backend for Service y/empty:http`,
			),
		);
	});

	it('reports at most one refusal per client netns and frontend per interval, and counts every one', async () => {
		const c2 = cookie('client2');
		const key = (): SockDropEvent[] => refusals(c2, EMPTY_VIP, 80, 6);
		const already = key().reduce((n, e) => n + 1 + e.suppressed, 0);
		assert.equal(already, 1, 'the previous test refused this key once');
		const counted = refusedCount(pinRoot);
		// Two processes of one pod refused in a loop at once (both CPUs): 2 x 400 refusals.
		const loops = [lab.client(lab.pod('client2'), { inCgroup: true }), lab.client(lab.pod('client2'), { inCgroup: true })];
		const t0 = Date.now();
		const benches = await Promise.all(loops.map((c) => c.bench(EMPTY_VIP, 80, 400)));
		const elapsedMs = Date.now() - t0;
		assert.deepEqual(
			benches.map((b) => b.failures),
			[400, 400],
			'every connect refused',
		);
		assert.equal(refusedCount(pinRoot), counted + 800n, 'every refusal counted in weir_metrics');
		await sleep(150);
		const during = key();
		assert.ok(during.length <= 1 + Math.ceil(elapsedMs / 1000) + 1, `${during.length} records for 801 refusals in ${elapsedMs} ms`);
		for (let i = 1; i < during.length; i++) {
			assert.ok(during[i]!.tsNs - during[i - 1]!.tsNs >= 1_000_000_000n, 'records of one key are at least the interval apart');
		}
		// After the interval, the next refusal reports with the number of those that had none.
		await sleep(1100);
		assert.equal((await loops[0]!.tcp(EMPTY_VIP, 80)).code, 'ECONNREFUSED');
		await until(records, () => key().length === during.length + 1, 'the report after the interval');
		const all = key();
		assert.equal(
			all.reduce((n, e) => n + 1 + e.suppressed, 0),
			1 + 800 + 1,
			`every refusal is a record or in a record's count: ${all.map((e) => e.suppressed).join(',')}`,
		);
		assert.ok(all.at(-1)!.suppressed > 0);
		// Another frontend of the same pod has its own budget.
		assert.equal((await loops[1]!.udp(EMPTY_VIP, 53)).code, 'ECONNREFUSED');
		await until(records, () => refusals(c2, EMPTY_VIP, 53, 17).length === 2, 'the UDP key, past its interval');
	});

	it('keeps a client on one backend with sessionAffinity, until the timeout', async () => {
		const answers = [];
		for (let i = 0; i < 20; i++) answers.push(await client.tcp(STICKY_VIP, 80));
		assert.ok(answers.every((a) => a.ok));
		const chosen = servers(answers);
		assert.equal(chosen.size, 1, `all to one backend: ${[...chosen].join(', ')}`);
		const other = chosen.has('b1') ? B2(WEB) : B1(WEB);
		const otherName = other.ip === POD.b1 ? 'b1' : 'b2';

		const aff = native().openPinnedMap(join(pinRoot, MapName.lb4Affinity));
		try {
			const key = encode('weir_lb4_affinity_key', { netns_cookie: cookie('client'), service_id: S_STICKY.id });
			const entry = aff.lookup(key);
			assert.ok(entry, 'an affinity entry for the client namespace');
			assert.equal(decode('weir_lb4_affinity_value', entry)['backend_addr'], ipv4ToInt(chosen.has('b1') ? POD.b1 : POD.b2));
			// The entry decides: pointed at the other backend (recently used), connects follow it.
			const pointAt = (b: Backend, agoSec: number, slot: number): void => {
				const last = process.hrtime.bigint() - BigInt(agoSec) * 1_000_000_000n;
				aff.update(key, encode('weir_lb4_affinity_value', { last_used_ns: last, backend_addr: ipv4ToInt(b.ip), backend_port: b.port, backend_slot: slot }));
			};
			// The slot is a hint: a wrong one (the slot of the backend first chosen) is searched past.
			const wrongSlot = other.ip === POD.b1 ? 2 : 1;
			pointAt(other, 1, wrongSlot);
			for (let i = 0; i < 8; i++) assert.equal((await client.tcp(STICKY_VIP, 80)).server, otherName);
			// Past the timeout (600 s) the entry no longer binds: over 16 tries a random choice shows.
			const after: string[] = [];
			for (let i = 0; i < 16; i++) {
				pointAt(other, 601, 1);
				after.push((await client.tcp(STICKY_VIP, 80)).server!);
			}
			assert.deepEqual(new Set(after), new Set(['b1', 'b2']), `an expired entry is not honoured: ${after.join(',')}`);
		} finally {
			aff.close();
		}
	});

	it('no longer chooses a backend that upsertService removed, affinity or not', async () => {
		lb.upsertService({ ...S_WEB, backends: [B2(WEB)] });
		assert.deepEqual(lb.services().find((s) => s.id === S_WEB.id)?.backends, [B2(WEB)]);
		const web = [];
		for (let i = 0; i < 30; i++) web.push(await client.tcp(VIP, 80));
		assert.deepEqual(servers(web), new Set(['b2']));
		// The sticky client is bound to some backend; keep only b1 and every connect goes there.
		lb.upsertService({ ...S_STICKY, backends: [B1(WEB)] });
		const sticky = [];
		for (let i = 0; i < 10; i++) sticky.push(await client.tcp(STICKY_VIP, 80));
		assert.deepEqual(servers(sticky), new Set(['b1']));
		// Growing again: the new slot is written before the master that counts it.
		lb.upsertService({ ...S_WEB, backends: [B2(WEB), B1(WEB)] });
		assert.deepEqual(lb.services().find((s) => s.id === S_WEB.id)?.backends, [B2(WEB), B1(WEB)]);
		const both = [];
		for (let i = 0; i < 30; i++) both.push(await client.tcp(VIP, 80));
		assert.deepEqual(servers(both), new Set(['b1', 'b2']));
	});

	it('no longer translates a deleted Service: its socket, affinity and reverse entries do not bring it back', async () => {
		// A UDP socket given a backend, and a sticky client, before the deletes.
		const first = await client.udp(VIP, 53, { sock: 'dns' });
		assert.ok(first.ok && first.replies[0]!.server !== 'sink', JSON.stringify(first));
		assert.ok((await client.tcp(STICKY_VIP, 80)).server !== 'sink');
		for (const s of [S_WEB, S_DNS, S_STICKY]) lb.deleteService(s.frontend);
		assert.deepEqual(
			lb.services().map((s) => s.id),
			[S_EMPTY.id, S_EMPTY_UDP.id],
		);
		const raw = native().openPinnedMap(join(pinRoot, MapName.lb4Services));
		assert.equal(raw.keys().length, 2, 'no slot of a deleted Service is left');
		raw.close();
		const tcp = await client.tcp(VIP, 80);
		assert.equal(tcp.server, 'sink', `untranslated: ${JSON.stringify(tcp)}`);
		assert.equal(tcp.peer, `${VIP}:80`);
		assert.equal((await client.tcp(STICKY_VIP, 80)).server, 'sink', 'affinity does not resurrect it');
		const again = await client.udp(VIP, 53, { sock: 'dns' });
		assert.equal(again.replies[0]?.server, 'sink', `the socket's backend does not resurrect it: ${JSON.stringify(again)}`);
		// Back again: translated at once, the same socket included.
		for (const s of [S_WEB, S_DNS, S_STICKY]) lb.upsertService(s);
		assert.notEqual((await client.tcp(VIP, 80)).server, 'sink');
		const back = await client.udp(VIP, 53, { sock: 'dns' });
		assert.ok(back.ok && back.replies[0]!.server !== 'sink' && back.replies[0]!.from === `${VIP}:53`, JSON.stringify(back));
	});

	it('leaves a process outside the cgroup, and addresses that are no frontend, untouched', async () => {
		const outside = lab.client(lab.pod('client'), { inCgroup: false });
		assert.equal((await outside.tcp(VIP, 80)).server, 'sink');
		assert.equal((await outside.udp(VIP, 53)).replies[0]?.server, 'sink');
		// In the cgroup, a port or address that is no frontend goes where it was sent.
		assert.equal((await client.tcp(VIP, 81)).code, 'ECONNREFUSED', 'no frontend on port 81: the sink refuses');
		assert.equal((await client.tcp('198.19.0.99', 80)).server, 'sink');
		const direct = await client.tcp(POD.b1, WEB);
		assert.equal(direct.server, 'b1');
		assert.equal(direct.peer, `${POD.b1}:${WEB}`);
	});

	it('says which Service a client namespace reached a backend through, and nothing for a direct connect', async () => {
		const t = await client.tcp(VIP, 80);
		const backend = t.server === 'b1' ? B1(WEB) : B2(WEB);
		assert.equal(lb.addressedService(cookie('client'), backend, 'TCP'), S_WEB.id);
		assert.equal(lb.addressedService(cookie('client'), backend, 'UDP'), undefined, 'another protocol');
		const u = await client.udp(VIP, 53);
		assert.equal(lb.addressedService(cookie('client'), u.replies[0]!.server === 'b1' ? B1(DNS) : B2(DNS), 'UDP'), S_DNS.id);
		const other = lab.client(lab.pod('client2'), { inCgroup: true });
		assert.equal((await other.tcp(POD.b1, WEB)).server, 'b1');
		assert.equal(lb.addressedService(cookie('client2'), B1(WEB), 'TCP'), undefined);
		assert.notEqual(cookie('client2'), cookie('client'));
	});

	it('leaves the sockets of a netns marked as a meshed source untranslated, refusing nothing', async () => {
		const c2 = cookie('client2');
		const meshed = lab.client(lab.pod('client2'), { inCgroup: true });
		assert.deepEqual(lb.meshedSources(), []);
		lb.setMeshedSource(c2, true);
		try {
			assert.deepEqual(lb.meshedSources(), [c2]);
			const before = refusedCount(pinRoot);
			const seen = records.length;
			assert.equal((await meshed.tcp(VIP, 80)).server, 'sink', 'the ClusterIP is left to the ztunnel');
			assert.equal((await meshed.udp(VIP, 53)).replies[0]?.server, 'sink');
			assert.equal((await meshed.tcp(EMPTY_VIP, 80)).server, 'sink', 'not refused either');
			assert.equal(refusedCount(pinRoot), before);
			await sleep(100);
			assert.equal(records.slice(seen).filter((r) => r.type === 'sock-drop').length, 0);
			// Another pod is load-balanced as before.
			assert.notEqual((await client.tcp(VIP, 80)).server, 'sink');
		} finally {
			lb.setMeshedSource(c2, false);
		}
		assert.deepEqual(lb.meshedSources(), []);
		assert.notEqual((await meshed.tcp(VIP, 80)).server, 'sink', 'unmarked: translated again');
	});

	it('refuses bad input with a stable code and writes nothing', () => {
		const before = lb.services();
		const raw = native().openPinnedMap(join(pinRoot, MapName.lb4Services));
		const keys = raw.keys().length;
		const fe = (f: Partial<Frontend>): Frontend => ({ ...S_WEB.frontend, vip: '198.19.0.50', ...f });
		const cases: Array<[string, object]> = [
			['WEIR_ERR_LB_BAD_SERVICE_ID', { ...S_WEB, id: 0, frontend: fe({}) }],
			['WEIR_ERR_LB_BAD_SERVICE_ID', { ...S_WEB, id: 65536, frontend: fe({}) }],
			['WEIR_ERR_LB_BAD_SERVICE_ID', { ...S_WEB, id: 1.5, frontend: fe({}) }],
			['WEIR_ERR_LB_BAD_ADDRESS', { ...S_WEB, frontend: fe({ vip: 'fd00::10' }) }],
			['WEIR_ERR_LB_BAD_ADDRESS', { ...S_WEB, frontend: fe({ vip: '198.19.0' }) }],
			['WEIR_ERR_LB_BAD_ADDRESS', { ...S_WEB, frontend: fe({}), backends: [B1(WEB), { ip: 'fd00::1', port: 80 }] }],
			['WEIR_ERR_LB_BAD_PORT', { ...S_WEB, frontend: fe({ port: 0 }) }],
			['WEIR_ERR_LB_BAD_PORT', { ...S_WEB, frontend: fe({}), backends: [B1(70000)] }],
			['WEIR_ERR_LB_BAD_PROTOCOL', { ...S_WEB, frontend: fe({ protocol: 'SCTP' as 'TCP' }) }],
			['WEIR_ERR_LB_BAD_PROTOCOL', { ...S_WEB, frontend: fe({ protocol: 'tcp' as 'TCP' }) }],
			[
				'WEIR_ERR_LB_TOO_MANY_BACKENDS',
				{ ...S_WEB, frontend: fe({}), backends: Array.from({ length: 4097 }, (_, i) => ({ ip: `10.213.${i >> 8}.${i & 255}`, port: 80 })) },
			],
			['WEIR_ERR_LB_BAD_AFFINITY', { ...S_WEB, frontend: fe({}), affinitySec: -1 }],
			['WEIR_ERR_LB_BAD_AFFINITY', { ...S_WEB, frontend: fe({}), affinitySec: 86401 }],
		];
		for (const [code, entry] of cases) {
			const e = lbError(() => lb.upsertService(entry as typeof S_WEB), code);
			assert.ok(e.message.length > 20, e.message);
		}
		lbError(() => lb.deleteService({ vip: 'fd00::10', port: 80, protocol: 'TCP' }), 'WEIR_ERR_LB_BAD_ADDRESS');
		lbError(() => lb.deleteService({ vip: VIP, port: 80, protocol: 'ICMP' as 'TCP' }), 'WEIR_ERR_LB_BAD_PROTOCOL');
		assert.deepEqual(lb.services(), before);
		assert.equal(raw.keys().length, keys, 'no map entry was written');
		raw.close();
		// Deleting what is not there is not an error.
		lb.deleteService(fe({}));
	});

	it('keeps translating with no gap across a restart, which swaps the programs in place', async () => {
		const progsBefore = cgroupProgs(lab.cgroup);
		assert.equal(progsBefore.length, 4);
		const linksBefore = pinnedLinks(pinRoot, lab.cgroup);
		const running = client.loop(VIP, 80, 2500);
		await new Promise((r) => setTimeout(r, 400));
		lb.close();
		// No agent at all for a while: the pinned links and maps go on.
		await new Promise((r) => setTimeout(r, 400));
		lb = await open({ cgroupPath: lab.cgroup });
		const { counts, failures } = await running;
		assert.deepEqual(failures, {}, 'no connect failed');
		assert.deepEqual(Object.keys(counts).sort(), ['b1', 'b2'], `every connect translated: ${JSON.stringify(counts)}`);
		const progsAfter = cgroupProgs(lab.cgroup);
		assert.deepEqual(
			progsAfter.map((p) => p.attach_type),
			progsBefore.map((p) => p.attach_type),
			'one program per hook, as before',
		);
		for (let i = 0; i < 4; i++) assert.notEqual(progsAfter[i]!.id, progsBefore[i]!.id, `${progsAfter[i]!.attach_type}: the new program is attached`);
		// The same links, updated in place (bpf_link_update), not detached and attached anew.
		const linksAfter = pinnedLinks(pinRoot, lab.cgroup);
		for (const [hook, l] of Object.entries(linksAfter)) {
			assert.equal(l.id, linksBefore[hook]!.id, `${hook}: same link`);
			assert.notEqual(l.prog_id, linksBefore[hook]!.prog_id, `${hook}: new program`);
			assert.ok(progsAfter.some((p) => p.id === l.prog_id));
		}
		assert.deepEqual(lb.services(), [S_WEB, S_DNS, S_EMPTY, S_EMPTY_UDP, S_STICKY], 'the Services survived in the pinned map');
		// A second handle that only loads (no cgroup) reads the same maps and leaves the links alone.
		const reader = await open();
		assert.deepEqual(reader.services(), lb.services());
		reader.close();
		assert.deepEqual(
			cgroupProgs(lab.cgroup).map((p) => p.id),
			progsAfter.map((p) => p.id),
		);
	});

	it('detaches: no program is left on the cgroup and the ClusterIP is no longer translated', async () => {
		lb.detach();
		assert.deepEqual(cgroupProgs(lab.cgroup), []);
		assert.deepEqual(lb.attachedCgroups(), []);
		assert.equal((await client.tcp(VIP, 80)).server, 'sink');
		assert.deepEqual(lb.services().length, 5, 'the maps stay');
	});

	it('is detached by the node uninstall (uninstallPins) too', async () => {
		lb.close();
		lb = await open({ cgroupPath: lab.cgroup });
		assert.equal(cgroupProgs(lab.cgroup).length, 4);
		lb.close();
		const r = uninstallPins(pinRoot);
		assert.deepEqual(r.warnings, []);
		assert.deepEqual(
			r.detached.map((f) => f.split('/').pop()),
			['connect4', 'sendmsg4', 'recvmsg4', 'getpeername4'],
		);
		assert.deepEqual(cgroupProgs(lab.cgroup), []);
		assert.equal(existsSync(pinRoot), false);
		assert.equal((await client.tcp(VIP, 80)).server, 'sink');
	});
});
