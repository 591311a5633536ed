// Real-kernel tests of the native addon (native/addon) through its contract
// (src/bpf/native.ts), on its own fixture programs (test/fixtures/bpf). Needs root:
// it loads programs, creates a network namespace with a veth pair, a cgroup and
// bpffs pins, and removes all of them afterwards, also on failure.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, rmdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native, type NativeBinding, type NativeError, type NativeLink, type NativeObject, type NativeRingBuffer } from '../../src/kernel/addon.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const FIXTURE = resolve(root, 'build/test-bpf/addon_fixture.bpf.o');
const REJECT = resolve(root, 'build/test-bpf/addon_reject.bpf.o');

const tag = String(process.pid % 100000);
const NETNS = `weirtest-addon-${tag}`;
const VETH_HOST = `weirt${tag}a`;
const VETH_PEER = `weirt${tag}b`;
// A /30 out of TEST-NET-3: no route anywhere but this veth.
const NET = (process.pid % 60) * 4;
const HOST_IP = `203.0.113.${NET + 1}`;
const PEER_IP = `203.0.113.${NET + 2}`;
const PIN_ROOT = `/sys/fs/bpf/weir-test-addon-${tag}`;
const CGROUP = `/sys/fs/cgroup/unified/weir-test-addon-${tag}`;

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

function sh(cmd: string, args: string[]): string {
	return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function quiet(cmd: string, args: string[]): void {
	spawnSync(cmd, args, { stdio: 'ignore' });
}

function u32(n: number): Buffer {
	const b = Buffer.alloc(4);
	b.writeUInt32LE(n);
	return b;
}
function u64(n: number): Buffer {
	const b = Buffer.alloc(8);
	b.writeBigUInt64LE(BigInt(n));
	return b;
}
/** An Ethernet + IPv4 + UDP frame (what a tc program sees). */
function udpFrame(): Buffer {
	const b = Buffer.alloc(14 + 20 + 8 + 4);
	b.writeUInt16BE(0x0800, 12);
	b[14] = 0x45;
	b.writeUInt16BE(20 + 8 + 4, 16);
	b[22] = 64;
	b[23] = 17;
	Buffer.from([192, 0, 2, NET + 2]).copy(b, 26);
	Buffer.from([192, 0, 2, NET + 1]).copy(b, 30);
	b.writeUInt16BE(40000, 34);
	b.writeUInt16BE(53, 36);
	b.writeUInt16BE(12, 38);
	return b;
}

/** Asserts fn throws a NativeError with this code (and op, if given); returns it. */
function nativeError(fn: () => unknown, code: string, op?: string): NativeError {
	let caught: unknown;
	try {
		fn();
	} catch (e) {
		caught = e;
	}
	assert.ok(caught instanceof Error, `expected a thrown ${code}`);
	const e = caught as NativeError;
	assert.equal(e.code, code, e.message);
	assert.equal(typeof e.errno, 'number');
	assert.ok(e.errno > 0);
	assert.equal(typeof e.log, 'string');
	if (op) assert.equal(e.op, op, e.message);
	assert.ok(e.message.includes(`(${code})`), e.message);
	return e;
}

async function rejected(p: Promise<unknown>): Promise<NativeError> {
	try {
		await p;
	} catch (e) {
		return e as NativeError;
	}
	assert.fail('expected a rejection');
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
	const end = Date.now() + ms;
	while (Date.now() < end) {
		if (cond()) return true;
		await new Promise((r) => setTimeout(r, 20));
	}
	return cond();
}

describe('native addon (real kernel)', () => {
	let b: NativeBinding;
	const objects: NativeObject[] = [];
	const links: NativeLink[] = [];
	const rings: NativeRingBuffer[] = [];

	async function loaded(opts?: Parameters<NativeBinding['openObject']>[1]): Promise<NativeObject> {
		const o = b.openObject(FIXTURE, opts);
		objects.push(o);
		await o.load();
		return o;
	}

	before(() => {
		assert.equal(process.getuid?.(), 0, 'the real-kernel tests need root');
		assert.ok(existsSync(FIXTURE), `${FIXTURE} missing: run make -C test/fixtures/bpf`);
		b = native();
	});

	after(() => {
		for (const r of rings) r.close();
		for (const l of links) {
			try {
				l.detach();
			} catch {
				/* best effort */
			}
		}
		for (const o of objects) o.close();
		quiet('ip', ['netns', 'del', NETNS]);
		quiet('ip', ['link', 'del', VETH_HOST]);
		rmSync(PIN_ROOT, { recursive: true, force: true });
		if (existsSync(CGROUP)) rmdirSync(CGROUP);
	});

	it('reports libbpf, CPUs and interface indexes', () => {
		assert.match(b.libbpfVersion(), /^\d+\.\d+/);
		assert.ok(b.numPossibleCpus() >= 1);
		assert.equal(b.ifNameToIndex('lo'), 1);
		assert.equal(b.ifNameToIndex('weir-no-such'), 0);
	});

	it('loads an object and configures it through rodata', async () => {
		const dflt = await loaded();
		assert.deepEqual(dflt.programNames().sort(), ['weir_test_connect4', 'weir_test_connect4_deny', 'weir_test_tc', 'weir_test_tc_alt']);
		assert.ok(dflt.mapNames().includes('weir_test_kv'));
		assert.ok(dflt.mapNames().some((n) => n.endsWith('.rodata')));
		const p0 = dflt.program('weir_test_tc');
		assert.equal(p0.name, 'weir_test_tc');
		// The binding's methods are the contract's (src/bpf/native.ts), no more.
		assert.deepEqual(
			Object.getOwnPropertyNames(Object.getPrototypeOf(p0))
				.filter((k) => k !== 'constructor')
				.sort(),
			['attachCgroup', 'attachTc', 'attachTcAsync', 'close', 'fd', 'pin', 'testRun'],
		);
		assert.ok(p0.id > 0 && p0.fd > 0);
		assert.equal(p0.testRun({ data: udpFrame() }).retval, TC_ACT_OK);

		const shot = await loaded({ rodata: { weir_test_verdict: u32(TC_ACT_SHOT) } });
		assert.equal(shot.program('weir_test_tc').testRun({ data: udpFrame() }).retval, TC_ACT_SHOT);

		const both = await loaded({ rodata: { weir_test_verdict: u32(1), weir_test_small: Buffer.from([5]) } });
		assert.equal(both.program('weir_test_tc').testRun({ data: udpFrame() }).retval, 6);
	});

	it('rejects rodata of the wrong size or an unknown name', () => {
		let e = nativeError(() => b.openObject(FIXTURE, { rodata: { weir_test_verdict: Buffer.alloc(2) } }), 'EINVAL', 'rodata');
		assert.match(e.message, /weir_test_verdict.*4 bytes, got 2/);
		e = nativeError(() => b.openObject(FIXTURE, { rodata: { weir_no_such_var: u32(1) } }), 'EINVAL', 'rodata');
		assert.match(e.message, /weir_no_such_var/);
		e = nativeError(() => b.openObject(REJECT, { rodata: { x: u32(1) } }), 'EINVAL', 'rodata');
		assert.match(e.message, /no \.rodata/);
	});

	it('does map CRUD and checks key and value sizes', async () => {
		const o = await loaded();
		const kv = o.map('weir_test_kv');
		assert.equal(kv.name, 'weir_test_kv');
		assert.equal(kv.type, 1); // BPF_MAP_TYPE_HASH
		assert.equal(kv.keySize, 4);
		assert.equal(kv.valueSize, 8);
		assert.equal(kv.maxEntries, 1024);
		assert.ok(kv.id > 0);

		assert.equal(kv.lookup(u32(1)), null);
		kv.update(u32(1), u64(11));
		assert.deepEqual(kv.lookup(u32(1)), u64(11));
		kv.update(u32(1), u64(12), 2 /* BPF_EXIST */);
		assert.deepEqual(kv.lookup(u32(1)), u64(12));
		nativeError(() => kv.update(u32(1), u64(13), 1 /* BPF_NOEXIST */), 'EEXIST', 'bpf_map_update_elem');
		nativeError(() => kv.update(u32(2), u64(13), 2 /* BPF_EXIST */), 'ENOENT', 'bpf_map_update_elem');
		assert.deepEqual(kv.keys(), [u32(1)]);
		assert.equal(kv.delete(u32(1)), true);
		assert.equal(kv.delete(u32(1)), false);

		let e = nativeError(() => kv.lookup(Buffer.alloc(3)), 'EINVAL', 'bpf_map_lookup_elem');
		assert.match(e.message, /key must be 4 bytes, got 3/);
		e = nativeError(() => kv.update(u32(1), Buffer.alloc(4)), 'EINVAL', 'bpf_map_update_elem');
		assert.match(e.message, /value must be 8 bytes, got 4/);
		nativeError(() => kv.delete(Buffer.alloc(8)), 'EINVAL', 'bpf_map_delete_elem');
		nativeError(() => kv.lookup('nope' as unknown as Buffer), 'EINVAL');

		const arr = o.map('weir_test_counts');
		nativeError(() => arr.update(u32(99), u64(1)), 'E2BIG', 'bpf_map_update_elem');

		// Per-CPU: nCPU * round_up(4, 8) bytes.
		const pc = o.map('weir_test_pcpu');
		assert.equal(pc.valueSize, 4);
		const per = b.numPossibleCpus() * 8;
		assert.equal(pc.lookup(u32(0))?.length, per);
		const v = Buffer.alloc(per);
		v.writeUInt32LE(7, 0);
		pc.update(u32(1), v);
		assert.equal(pc.lookup(u32(1))?.readUInt32LE(0), 7);
		e = nativeError(() => pc.update(u32(1), Buffer.alloc(4)), 'EINVAL');
		assert.match(e.message, new RegExp(`value must be ${per} bytes, got 4`));

		kv.close();
		kv.close();
		assert.equal(kv.fd, -1);
		nativeError(() => kv.lookup(u32(1)), 'EBADF');
	});

	it('does batch operations, with a key walk where batches are unsupported', async () => {
		const o = await loaded();
		const kv = o.map('weir_test_kv');
		const n = 300;
		const keys = Buffer.concat(Array.from({ length: n }, (_, i) => u32(i)));
		const values = Buffer.concat(Array.from({ length: n }, (_, i) => u64(i * 3)));
		assert.equal(kv.updateBatch(keys, values), n);
		const entries = kv.entries();
		assert.equal(entries.length, n);
		for (const [k, val] of entries) assert.equal(Number(val.readBigUInt64LE()), k.readUInt32LE() * 3);
		assert.equal(kv.keys().length, n);

		// A missing key in the middle is skipped.
		assert.equal(kv.deleteBatch(Buffer.concat([u32(0), u32(100000), u32(1), u32(2)])), 3);
		assert.equal(kv.entries().length, n - 3);
		nativeError(() => kv.updateBatch(Buffer.alloc(6), Buffer.alloc(8)), 'EINVAL', 'bpf_map_update_batch');
		const e = nativeError(() => kv.updateBatch(u32(1), Buffer.alloc(9)), 'EINVAL', 'bpf_map_update_batch');
		assert.match(e.message, /8 bytes, got 9/);

		// Arrays: batch lookup of every slot.
		const arr = o.map('weir_test_counts');
		assert.equal(arr.updateBatch(Buffer.concat([u32(0), u32(3)]), Buffer.concat([u64(5), u64(6)])), 2);
		const ae = arr.entries();
		assert.equal(ae.length, 4);
		assert.equal(Number(ae[3]?.[1].readBigUInt64LE()), 6);

		// LPM trie: no batch lookup, entries() walks the keys.
		const lpm = o.map('weir_test_lpm');
		const pfx = (len: number, a: number[]) => Buffer.concat([u32(len), Buffer.from(a)]);
		assert.equal(lpm.updateBatch(Buffer.concat([pfx(8, [10, 0, 0, 0]), pfx(24, [10, 1, 2, 0])]), Buffer.concat([u32(1), u32(2)])), 2);
		const le = lpm.entries();
		assert.equal(le.length, 2);
		assert.deepEqual(le.map(([, v]) => v.readUInt32LE()).sort(), [1, 2]);
		assert.equal(lpm.deleteBatch(Buffer.concat([pfx(8, [10, 0, 0, 0]), pfx(16, [10, 9, 0, 0])])), 1);
		assert.equal(lpm.keys().length, 1);
	});

	it('pins maps by name under pinRoot and reuses them on the next open', async () => {
		mkdirSync(PIN_ROOT, { recursive: true });
		const first = await loaded({ pinRoot: PIN_ROOT });
		assert.ok(existsSync(`${PIN_ROOT}/weir_test_counts`));
		const id = first.map('weir_test_counts').id;
		first.map('weir_test_counts').update(u32(2), u64(42));
		first.close();
		first.close();

		const second = await loaded({ pinRoot: PIN_ROOT });
		const counts = second.map('weir_test_counts');
		assert.equal(counts.id, id);
		assert.deepEqual(counts.lookup(u32(2)), u64(42));
		// The program of the second load writes into the same map.
		second.program('weir_test_tc').testRun({ data: udpFrame(), repeat: 5 });
		const pinned = b.openPinnedMap(`${PIN_ROOT}/weir_test_counts`);
		assert.equal(pinned.id, id);
		assert.equal(pinned.keySize, 4);
		assert.equal(Number(pinned.lookup(u32(0))?.readBigUInt64LE()), 5);
		pinned.close();

		// Explicit pins of a map and a program.
		second.map('weir_test_kv').pin(`${PIN_ROOT}/kv`);
		second.program('weir_test_tc').pin(`${PIN_ROOT}/prog`);
		assert.equal(b.openPinnedMap(`${PIN_ROOT}/kv`).name, 'weir_test_kv');
		const prog = b.openPinnedProgram(`${PIN_ROOT}/prog`);
		assert.equal(prog.id, second.program('weir_test_tc').id);
		assert.equal(prog.testRun({ data: udpFrame() }).retval, TC_ACT_OK);
		nativeError(() => second.map('weir_test_kv').pin(`${PIN_ROOT}/kv`), 'EEXIST', 'bpf_obj_pin');
		nativeError(() => b.openPinnedProgram(`${PIN_ROOT}/kv`), 'EINVAL', 'bpf_obj_get');
	});

	it('runs BPF_PROG_TEST_RUN with repeat, data out and duration', async () => {
		const o = await loaded({ rodata: { weir_test_verdict: u32(TC_ACT_SHOT) } });
		const p = o.program('weir_test_tc');
		const data = udpFrame();
		const r = p.testRun({ data, repeat: 1000 });
		assert.equal(r.retval, TC_ACT_SHOT);
		assert.ok(r.duration > 0);
		assert.deepEqual(r.dataOut, data);
		assert.equal(r.ctxOut, null);
		assert.equal(Number(o.map('weir_test_counts').lookup(u32(0))?.readBigUInt64LE()), 1000);
		nativeError(() => p.testRun({ data: Buffer.alloc(4) }), 'EINVAL', 'bpf_prog_test_run_opts');
		nativeError(() => p.testRun({ data, repeat: 0 }), 'EINVAL');
		const small = nativeError(() => p.testRun({ data, dataOutSize: 8 }), 'ENOSPC');
		assert.match(small.message, new RegExp(`too small, the output is ${data.length} bytes`));
		// __sk_buff in and out: the kernel returns its whole context.
		const ctx = Buffer.alloc(192);
		const withCtx = p.testRun({ data, ctx });
		assert.ok(withCtx.ctxOut && withCtx.ctxOut.length >= 192);
	});

	describe('on a veth pair in a network namespace', () => {
		let ifindex = 0;

		before(() => {
			quiet('ip', ['netns', 'del', NETNS]);
			quiet('ip', ['link', 'del', VETH_HOST]);
			sh('ip', ['netns', 'add', NETNS]);
			sh('ip', ['link', 'add', VETH_HOST, 'type', 'veth', 'peer', 'name', VETH_PEER]);
			sh('ip', ['link', 'set', VETH_PEER, 'netns', NETNS]);
			sh('ip', ['addr', 'add', `${HOST_IP}/30`, 'dev', VETH_HOST]);
			sh('ip', ['link', 'set', VETH_HOST, 'up']);
			sh('ip', ['-n', NETNS, 'addr', 'add', `${PEER_IP}/30`, 'dev', VETH_PEER]);
			sh('ip', ['-n', NETNS, 'link', 'set', VETH_PEER, 'up']);
			sh('ip', ['-n', NETNS, 'link', 'set', 'lo', 'up']);
			ifindex = b.ifNameToIndex(VETH_HOST);
			assert.ok(ifindex > 0);
		});

		it('attaches with tcx, queries, pins, reopens, updates and detaches', async () => {
			const o = await loaded();
			const main = o.program('weir_test_tc');
			const alt = o.program('weir_test_tc_alt');
			assert.deepEqual(b.tcxQuery(ifindex, 'ingress'), []);

			const link = main.attachTc(ifindex, 'ingress');
			links.push(link);
			assert.equal(link.kind, 'tcx');
			assert.ok(link.fd > 0);
			assert.deepEqual(b.tcxQuery(ifindex, 'ingress'), [main.id]);
			assert.deepEqual(b.tcxQuery(ifindex, 'egress'), []);
			assert.deepEqual(b.tcLegacyQuery(ifindex, 'ingress'), []);

			mkdirSync(PIN_ROOT, { recursive: true });
			link.pin(`${PIN_ROOT}/tcx-link`);
			link.close(); // pinned: stays attached
			link.close();
			assert.deepEqual(b.tcxQuery(ifindex, 'ingress'), [main.id]);

			const reopened = b.openPinnedLink(`${PIN_ROOT}/tcx-link`);
			links.push(reopened);
			assert.equal(reopened.kind, 'tcx');
			reopened.update(alt);
			assert.deepEqual(b.tcxQuery(ifindex, 'ingress'), [alt.id]);

			reopened.detach();
			reopened.detach();
			assert.deepEqual(b.tcxQuery(ifindex, 'ingress'), []);
			rmSync(`${PIN_ROOT}/tcx-link`);

			// egress too, and closing an unpinned link's last fd detaches it.
			const eg = main.attachTc(ifindex, 'egress');
			assert.deepEqual(b.tcxQuery(ifindex, 'egress'), [main.id]);
			eg.close();
			assert.deepEqual(b.tcxQuery(ifindex, 'egress'), []);
		});

		it('attaches a legacy clsact filter, queries, updates and detaches it', async () => {
			const o = await loaded();
			const main = o.program('weir_test_tc');
			const alt = o.program('weir_test_tc_alt');
			const link = main.attachTc(ifindex, 'egress', { legacy: true });
			links.push(link);
			assert.equal(link.kind, 'tc');
			assert.deepEqual(b.tcLegacyQuery(ifindex, 'egress'), [main.id]);
			assert.deepEqual(b.tcLegacyQuery(ifindex, 'ingress'), []);
			assert.deepEqual(b.tcxQuery(ifindex, 'egress'), []);
			nativeError(() => link.pin(`${PIN_ROOT}/tc-link`), 'EOPNOTSUPP', 'bpf_obj_pin');

			// A second filter at the same handle/priority fails and leaves the first alone.
			nativeError(() => alt.attachTc(ifindex, 'egress', { legacy: true }), 'EEXIST', 'bpf_tc_attach');
			assert.deepEqual(b.tcLegacyQuery(ifindex, 'egress'), [main.id]);

			link.update(alt);
			assert.deepEqual(b.tcLegacyQuery(ifindex, 'egress'), [alt.id]);
			link.detach();
			link.detach();
			assert.deepEqual(b.tcLegacyQuery(ifindex, 'egress'), []);
		});

		it('delivers ring buffer records of real traffic in batches', async () => {
			const o = await loaded();
			const main = o.program('weir_test_tc');
			const records: Buffer[] = [];
			let batches = 0;
			const ring = b.openRingBuffer(o.map('weir_test_events'), (recs) => {
				batches++;
				for (const r of recs) records.push(r);
			});
			rings.push(ring);
			const link = main.attachTc(ifindex, 'ingress');
			links.push(link);
			try {
				const ping = spawnSync('ip', ['netns', 'exec', NETNS, 'ping', '-c', '3', '-i', '0.2', '-w', '6', HOST_IP], {
					encoding: 'utf8',
				});
				assert.equal(ping.status, 0, `ping failed: ${ping.stdout}${ping.stderr}`);
				const mine = () => records.filter((r) => r.readUInt32LE(0) === 0x57454952 && r.readUInt32LE(8) === ifindex);
				assert.ok(await waitFor(() => mine().length >= 3, 5000), `got ${mine().length} records`);
				assert.ok(batches >= 1);
				for (const r of mine()) {
					assert.equal(r.length, 16);
					assert.ok(r.readUInt32LE(4) >= 42); // skb->len
				}
				// Each record is its own Buffer copy.
				const [r0, r1] = mine();
				assert.ok(r0 && r1 && r0.buffer !== r1.buffer);
				const count = o.map('weir_test_counts').lookup(u32(0));
				assert.ok(Number(count?.readBigUInt64LE()) >= 3);
			} finally {
				link.detach();
				ring.close();
				ring.close();
			}
			assert.deepEqual(b.tcxQuery(ifindex, 'ingress'), []);
			nativeError(() => b.openRingBuffer(o.map('weir_test_kv'), () => {}), 'EINVAL', 'openRingBuffer');
			const bad = nativeError(() => b.openRingBuffer(o.map('weir_test_events'), () => {}, 5 as never), 'EINVAL', 'openRingBuffer');
			assert.match(bad.message, /onError must be a function/);
			assert.deepEqual(o.map('weir_test_events').entries(), []);
			assert.deepEqual(o.map('weir_test_events').keys(), []);
		});

		it('attaches, queries and detaches inside another netns without moving the process', async () => {
			const o = await loaded();
			const main = o.program('weir_test_tc');
			const alt = o.program('weir_test_tc_alt');
			const netns = `/run/netns/${NETNS}`;
			const peer = b.ifNameToIndex(VETH_PEER, netns);
			assert.ok(peer > 0);
			assert.equal(b.ifNameToIndex(VETH_PEER), 0); // not in our netns

			const tcx = main.attachTc(peer, 'egress', { netns });
			links.push(tcx);
			assert.equal(tcx.kind, 'tcx');
			assert.deepEqual(b.tcxQuery(peer, 'egress', netns), [main.id]);
			const legacy = main.attachTc(peer, 'ingress', { netns, legacy: true });
			links.push(legacy);
			assert.equal(legacy.kind, 'tc');
			assert.deepEqual(b.tcLegacyQuery(peer, 'ingress', netns), [main.id]);
			legacy.update(alt);
			assert.deepEqual(b.tcLegacyQuery(peer, 'ingress', netns), [alt.id]);

			// Real traffic crosses the programs in the other namespace.
			const before = Number(o.map('weir_test_counts').lookup(u32(0))?.readBigUInt64LE());
			const ping = spawnSync('ip', ['netns', 'exec', NETNS, 'ping', '-c', '2', '-i', '0.2', '-w', '6', HOST_IP]);
			assert.equal(ping.status, 0);
			assert.ok(Number(o.map('weir_test_counts').lookup(u32(0))?.readBigUInt64LE()) >= before + 2);
			assert.ok(Number(o.map('weir_test_counts').lookup(u32(1))?.readBigUInt64LE()) >= 2);

			tcx.detach();
			legacy.detach();
			assert.deepEqual(b.tcxQuery(peer, 'egress', netns), []);
			assert.deepEqual(b.tcLegacyQuery(peer, 'ingress', netns), []);
			assert.equal(b.ifNameToIndex(VETH_HOST), ifindex); // the process stayed where it was

			nativeError(() => main.attachTc(peer, 'egress', { netns: '/run/netns/weirtest-no-such' }), 'ENOENT', 'open');
			nativeError(() => b.tcxQuery(peer, 'egress', '/run/netns/weirtest-no-such'), 'ENOENT', 'open');
			nativeError(() => b.ifNameToIndex('lo', '/etc/hostname'), 'EINVAL', 'setns');
			nativeError(() => main.attachTc(999999, 'egress', { netns }), 'ENODEV', 'if_indextoname');
		});

		it('fails cleanly on a missing interface and bad directions', async () => {
			const o = await loaded();
			const p = o.program('weir_test_tc');
			let e = nativeError(() => p.attachTc(999999, 'ingress'), 'ENODEV');
			assert.match(e.message, /999999/);
			nativeError(() => p.attachTc(999999, 'egress', { legacy: true }), 'ENODEV');
			nativeError(() => p.attachTc(0, 'ingress'), 'ENODEV');
			nativeError(() => p.attachTc(ifindex, 'sideways' as 'ingress'), 'EINVAL');
			nativeError(() => p.attachTc(1.5, 'ingress'), 'EINVAL');
			nativeError(() => b.tcxQuery(999999, 'ingress'), 'ENODEV');
			nativeError(() => b.tcLegacyQuery(999999, 'ingress'), 'ENODEV');
			assert.deepEqual(b.tcxQuery(ifindex, 'ingress'), []);
			assert.deepEqual(b.tcLegacyQuery(ifindex, 'ingress'), []);
			// a program of the wrong type can't go on tc; nothing is left behind.
			e = nativeError(() => o.program('weir_test_connect4').attachTc(ifindex, 'ingress'), 'EINVAL', 'attachTc');
			assert.match(e.message, /not a tc program/);
			assert.deepEqual(b.tcxQuery(ifindex, 'ingress'), []);
			assert.deepEqual(b.tcLegacyQuery(ifindex, 'ingress'), []);
		});
	});

	it('sizes maps before load', async () => {
		const o = await loaded({ maxEntries: { weir_test_kv: 7, weir_test_lpm: 3 } });
		assert.equal(o.map('weir_test_kv').maxEntries, 7);
		assert.equal(o.map('weir_test_lpm').maxEntries, 3);
		let e = nativeError(() => b.openObject(FIXTURE, { maxEntries: { weir_no_such_map: 4 } }), 'ENOENT', 'bpf_map__set_max_entries');
		assert.match(e.message, /weir_no_such_map/);
		e = nativeError(() => b.openObject(FIXTURE, { maxEntries: { weir_test_kv: 0 } }), 'EINVAL', 'bpf_map__set_max_entries');
		assert.match(e.message, /weir_test_kv/);
		nativeError(() => b.openObject(FIXTURE, { maxEntries: { weir_test_kv: 1.5 } }), 'EINVAL', 'bpf_map__set_max_entries');
	});

	it('reports network namespace cookies', () => {
		const own = b.netnsCookie();
		assert.equal(typeof own, 'bigint');
		assert.ok(own > 0n);
		assert.equal(b.netnsCookie('/proc/self/ns/net'), own);
		assert.equal(b.netnsCookie(), own);
		sh('ip', ['netns', 'add', `${NETNS}-ck`]);
		try {
			const other = b.netnsCookie(`/run/netns/${NETNS}-ck`);
			assert.ok(other > 0n && other !== own);
			assert.equal(b.netnsCookie(`/run/netns/${NETNS}-ck`), other);
		} finally {
			quiet('ip', ['netns', 'del', `${NETNS}-ck`]);
		}
		nativeError(() => b.netnsCookie('/run/netns/weirtest-no-such'), 'ENOENT', 'open');
		nativeError(() => b.netnsCookie('/etc/hostname'), 'EINVAL', 'setns');
	});

	it('attaches, pins, updates and detaches a cgroup link', async () => {
		mkdirSync(CGROUP);
		const o = await loaded();
		const p = o.program('weir_test_connect4');
		const deny = o.program('weir_test_connect4_deny');
		const attached = (): number[] => (JSON.parse(sh('bpftool', ['cgroup', 'show', CGROUP, '-j']).trim() || '[]') as Array<{ id: number }>).map((x) => x.id);
		// A connect to a closed loopback port from a process inside the cgroup: the
		// kernel's ECONNREFUSED passes an allowing program, a refusing one turns it into EPERM.
		const connectFromCgroup = (): string => {
			const js = "require('net').connect(1,'127.0.0.1').on('error',(e)=>{console.log(e.code)}).on('connect',()=>{console.log('connected');process.exit()})";
			const r = spawnSync('sh', ['-c', `echo $$ > ${CGROUP}/cgroup.procs && exec "$0" -e "$1"`, process.execPath, js], { encoding: 'utf8' });
			return r.stdout.trim();
		};
		const link = p.attachCgroup(CGROUP, 'cgroup_inet4_connect');
		links.push(link);
		assert.equal(link.kind, 'cgroup');
		assert.deepEqual(attached(), [p.id]);
		assert.equal(connectFromCgroup(), 'ECONNREFUSED');
		mkdirSync(PIN_ROOT, { recursive: true });
		link.pin(`${PIN_ROOT}/cg-link`);
		link.close(); // the pin keeps it attached
		assert.deepEqual(attached(), [p.id]);
		const again = b.openPinnedLink(`${PIN_ROOT}/cg-link`);
		links.push(again);
		assert.equal(again.kind, 'cgroup');
		again.update(deny);
		assert.deepEqual(attached(), [deny.id]);
		assert.equal(connectFromCgroup(), 'EPERM');
		again.update(p);
		assert.equal(connectFromCgroup(), 'ECONNREFUSED');
		again.detach();
		assert.deepEqual(attached(), []);
		rmSync(`${PIN_ROOT}/cg-link`);
		assert.equal(readFileSync(`${CGROUP}/cgroup.procs`, 'utf8'), '');
		nativeError(() => p.attachCgroup(CGROUP, 'cgroup_nonsense'), 'EINVAL', 'attachCgroup');
		nativeError(() => p.attachCgroup(`${CGROUP}-missing`, 'cgroup_inet4_connect'), 'ENOENT', 'open');
		// the kernel refuses a program at a hook of another type, and nothing stays attached
		nativeError(() => p.attachCgroup(CGROUP, 'cgroup_inet4_getpeername'), 'EINVAL', 'bpf_link_create');
		assert.deepEqual(attached(), []);
	});

	it('turns a verifier rejection into an error with the log', async () => {
		const o = b.openObject(REJECT);
		objects.push(o);
		const e = await rejected(o.load());
		assert.equal(e.code, 'EACCES');
		assert.equal(e.errno, 13);
		assert.equal(e.op, 'bpf_object__load');
		assert.match(e.message, /^bpf_object__load\(addon_reject\.bpf\.o\): Permission denied \(EACCES\)/);
		assert.match(e.log, /invalid access to packet/);
		nativeError(() => o.program('weir_test_reject'), 'EINVAL', 'program');
		const again = await rejected(o.load());
		assert.equal(again.code, 'EALREADY');
	});

	it('fails cleanly on bad paths and misuse', async () => {
		nativeError(() => b.openObject('/nonexistent/x.bpf.o'), 'ENOENT', 'bpf_object__open_file');
		nativeError(() => b.openObject(FIXTURE, { pinRoot: '/sys/fs/bpf/weir-test-no-such-dir' }), 'ENOENT', 'open');
		nativeError(() => b.openPinnedMap('/sys/fs/bpf/weir-test-no-such-dir/map'), 'ENOENT', 'bpf_obj_get');
		nativeError(() => b.openPinnedLink('/sys/fs/bpf/weir-test-no-such-dir/link'), 'ENOENT', 'bpf_obj_get');
		nativeError(() => b.openPinnedProgram('/sys/fs/bpf/weir-test-no-such-dir/p'), 'ENOENT', 'bpf_obj_get');
		const o = b.openObject(FIXTURE);
		objects.push(o);
		nativeError(() => o.map('weir_test_kv'), 'EINVAL', 'map');
		await o.load();
		nativeError(() => o.map('weir_no_such_map'), 'ENOENT');
		nativeError(() => o.program('weir_no_such_prog'), 'ENOENT');
		nativeError(() => o.map('weir_test_kv').pin('/sys/fs/bpf/weir-test-no-such-dir/kv'), 'ENOENT', 'bpf_obj_pin');
		const kv = o.map('weir_test_kv');
		o.close();
		// Handles own their fds: still usable after the object is closed.
		kv.update(u32(1), u64(1));
		assert.deepEqual(kv.lookup(u32(1)), u64(1));
		nativeError(() => o.map('weir_test_kv'), 'EBADF');
		const closed = await rejected(o.load());
		assert.equal(closed.code, 'EBADF');
	});

	it('reports a poller that dies (a real epoll_wait failure) to onError, after the records it read', () => {
		// The child closes the poller's epoll fd under it (see test/helpers/ring-fault-child.ts).
		const child = resolve(root, 'dist/test/helpers/ring-fault-child.js');
		const r = spawnSync(process.execPath, [child, 'binding', FIXTURE], { timeout: 15000, encoding: 'utf8' });
		assert.equal(r.signal, null, `the child did not exit by itself: ${r.stdout}${r.stderr}`);
		assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
		const out = JSON.parse(r.stdout) as { isError: boolean; code: string; errno: number; op: string; message: string; records: number; newFds: number };
		assert.ok(out.newFds >= 1, 'the ring created its eventpoll fds');
		assert.equal(out.records, 3, 'the records before the failure were delivered');
		assert.deepEqual({ isError: out.isError, code: out.code, errno: out.errno, op: out.op }, { isError: true, code: 'EBADF', errno: 9, op: 'epoll_wait' });
		assert.match(out.message, /^epoll_wait\(weir_test_events\): Bad file descriptor \(EBADF\): the ring buffer poller stopped/);
		assert.equal(r.stderr, '', 'nothing on stderr: the failure went to onError');
	});

	it('lets the process exit once the ring buffer is closed', () => {
		const addon = resolve(root, 'build/addon/Release/weir_native.node');
		const script = `
			const b = require(${JSON.stringify(addon)});
			const o = b.openObject(${JSON.stringify(FIXTURE)});
			o.load().then(() => {
				const ring = b.openRingBuffer(o.map('weir_test_events'), () => {});
				o.program('weir_test_tc').testRun({ data: Buffer.alloc(64), repeat: 2 });
				setTimeout(() => { ring.close(); o.close(); }, 100);
			});`;
		const r = spawnSync(process.execPath, ['-e', script], { timeout: 10000, encoding: 'utf8' });
		assert.equal(r.signal, null, 'the process did not exit by itself');
		assert.equal(r.status, 0, r.stderr);
	});
});
