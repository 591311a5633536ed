import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
	IPPROTO,
	decodeCt4Key,
	decodeEndpointInfo,
	decodeEndpointKey,
	decodeEvent,
	decodeIpcacheKey,
	decodeIpcacheValue,
	decodeLb4Addressed,
	decodeLb4Key,
	decodeLb4Service,
	endpointInfo,
	endpointKey,
	ipcacheKey,
	ipcacheValue,
	lb4AddressedKey,
	lb4Key,
	lb4Master,
	lb4Slot,
	policyKeys,
	policyValue,
	portRangeToPrefixes,
} from '../../src/kernel/codecs.js';
import { intToIpv4, ipv4ToInt, parseCidr4 } from '../../src/shared/ipv4.js';
import { Dir, DropReason, IpcacheFlags, POLICY_FIXED_PREFIX, PolicyFlags, Structs, decode, encode, dropReasonName } from '../../src/kernel/layout.js';

test('IPv4 text and integer forms round-trip', () => {
	for (const ip of ['0.0.0.0', '10.244.1.7', '203.0.113.255', '255.255.255.255']) {
		assert.equal(intToIpv4(ipv4ToInt(ip)), ip);
	}
	assert.equal(ipv4ToInt('10.0.0.1'), 0x0a000001);
	assert.throws(() => ipv4ToInt('10.0.0'), /not an IPv4 address/);
	assert.throws(() => ipv4ToInt('10.0.0.256'), /not an IPv4 address/);
});

test('CIDRs parse with host bits cleared and bad lengths rejected', () => {
	assert.deepEqual(parseCidr4('10.1.2.3/8'), { addr: 0x0a000000, prefix: 8 });
	assert.deepEqual(parseCidr4('10.1.2.3'), { addr: 0x0a010203, prefix: 32 });
	assert.deepEqual(parseCidr4('0.0.0.0/0'), { addr: 0, prefix: 0 });
	for (const bad of ['10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/x', '10.0.0.0/']) {
		assert.throws(() => parseCidr4(bad), TypeError, bad);
	}
});

test('ipcache keys put the prefix after the 32 fixed bits and the address in network order', () => {
	const k = ipcacheKey('203.0.113.0/24');
	assert.equal(k.length, Structs.weir_ipcache_key.size);
	assert.equal(k.readUInt32LE(0), 32 + 24);
	assert.equal(k.readUInt8(7), 4);
	assert.deepEqual([...k.subarray(8, 12)], [203, 0, 113, 0]);
	assert.equal(decodeIpcacheKey(k), '203.0.113.0/24');
});

test('ipcache values carry the identity and the flags, which default to none', () => {
	const v = ipcacheValue(300, IpcacheFlags.Meshed);
	assert.equal(v.length, Structs.weir_ipcache_value.size);
	assert.equal(v.readUInt32LE(4), IpcacheFlags.Meshed);
	assert.deepEqual(decodeIpcacheValue(v), { identity: 300, flags: IpcacheFlags.Meshed });
	assert.deepEqual(decodeIpcacheValue(ipcacheValue(301)), { identity: 301, flags: 0 });
});

test('endpoint key and info round-trip', () => {
	assert.equal(decodeEndpointKey(endpointKey('10.244.0.9')), '10.244.0.9');
	const info = { epId: 7, identity: 300, ifindex: 12, flags: 3 };
	assert.deepEqual(decodeEndpointInfo(endpointInfo(info)), info);
});

test('port ranges become the fewest aligned blocks that cover exactly the range', () => {
	const cover = (lo: number, hi: number): void => {
		const blocks = portRangeToPrefixes(lo, hi);
		const covered = new Set<number>();
		for (const b of blocks) {
			const size = 2 ** (16 - b.bits);
			assert.equal(b.port % size, 0, 'aligned');
			for (let p = b.port; p < b.port + size; p++) {
				assert.ok(!covered.has(p), 'no overlap');
				covered.add(p);
			}
		}
		assert.equal(covered.size, hi - lo + 1);
		assert.ok(covered.has(lo) && covered.has(hi));
		assert.ok(blocks.length <= 30, `${lo}-${hi}: ${blocks.length} blocks`);
	};
	let seed = 42;
	const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
	for (let i = 0; i < 300; i++) {
		const a = Math.floor(rnd() * 65536);
		const b = Math.floor(rnd() * 65536);
		cover(Math.min(a, b), Math.max(a, b));
	}
	cover(0, 65535);
	cover(1, 65535);
	cover(80, 80);
	assert.deepEqual(portRangeToPrefixes(0, 65535), [{ port: 0, bits: 0 }]);
	assert.deepEqual(portRangeToPrefixes(8000, 8000), [{ port: 8000, bits: 16 }]);
	assert.throws(() => portRangeToPrefixes(10, 9), RangeError);
	assert.throws(() => portRangeToPrefixes(0, 65536), RangeError);
});

test('policy keys: all protocols, all ports, one port, a range', () => {
	const base = { epId: 5, identity: 300, direction: Dir.Ingress, ruleId: 9 } as const;
	const all = policyKeys(base);
	assert.equal(all.length, 1);
	assert.equal(all[0]!.readUInt32LE(0), POLICY_FIXED_PREFIX);
	assert.equal(policyValue(base).readUInt32LE(4), PolicyFlags.AllProtocols);
	const anyPort = policyKeys({ ...base, protocol: IPPROTO.TCP });
	assert.equal(anyPort[0]!.readUInt32LE(0), POLICY_FIXED_PREFIX + 8);
	const one = policyKeys({ ...base, protocol: IPPROTO.UDP, port: 53 });
	assert.equal(one[0]!.readUInt32LE(0), 96);
	assert.equal(one[0]!.readUInt16BE(14), 53, 'port in network order');
	assert.equal(decode('weir_policy_key', one[0]!)['protocol'], IPPROTO.UDP);
	assert.equal(policyKeys({ ...base, protocol: IPPROTO.TCP, port: 8000, endPort: 8100 }).length, portRangeToPrefixes(8000, 8100).length);
	assert.throws(() => policyKeys({ ...base, port: 80 }), /needs a protocol/);
});

test('events decode every field, and unknown reasons keep their code', () => {
	const buf = encode('weir_event', {
		ts_ns: 123n,
		type: 1,
		direction: 1,
		verdict: 2,
		family: 4,
		reason: DropReason.POLICY_DENIED,
		protocol: 6,
		tcp_flags: 2,
		ep_id: 3,
		src_identity: 300,
		dst_identity: 2,
		rule_id: 0,
		ifindex: 9,
		pkt_len: 60,
		saddr: [0x0a000001, 0, 0, 0],
		daddr: [0xcb007105, 0, 0, 0],
		sport: 40000,
		dport: 443,
		is_reply: 0,
		match_type: 0,
	});
	const ev = decodeEvent(buf);
	assert.equal(ev.type, 'drop');
	assert.equal(ev.direction, 'egress');
	assert.equal(ev.verdict, 'DROPPED');
	assert.equal(ev.reasonName, 'POLICY_DENIED');
	assert.equal(ev.src, '10.0.0.1');
	assert.equal(ev.dst, '203.0.113.5');
	assert.equal(ev.sport, 40000);
	assert.equal(ev.dport, 443);
	assert.equal(ev.tsNs, 123n);
	assert.equal(dropReasonName(-199), 'UNKNOWN(-199)');
	assert.throws(() => decodeEvent(buf.subarray(0, 10)), RangeError);
	assert.throws(() => encode('weir_event', { nope: 1 }), /no field 'nope'/);
});

test('conntrack keys decode ports in host order', () => {
	const k = encode('weir_ct4_key', { saddr: 0x0a000001, daddr: 0x0a000002, sport: 1234, dport: 80, protocol: 6, scope: 1 });
	assert.deepEqual(decodeCt4Key(k), { saddr: '10.0.0.1', daddr: '10.0.0.2', sport: 1234, dport: 80, protocol: 6, scope: 1 });
});

test('socket LB keys and values: addresses and ports in network order, slot 0 the master', () => {
	const k = lb4Key('198.19.0.10', 53, IPPROTO.UDP, 2);
	assert.equal(k.length, Structs.weir_lb4_key.size);
	assert.deepEqual([...k.subarray(0, 6)], [198, 19, 0, 10, 0, 53]);
	assert.equal(k.readUInt16LE(6), 2, 'slot, host order');
	assert.equal(k[8], IPPROTO.UDP);
	assert.deepEqual(decodeLb4Key(k), { vip: '198.19.0.10', port: 53, proto: IPPROTO.UDP, slot: 2 });

	const m = decodeLb4Service(lb4Master({ count: 3, serviceId: 700, flags: 1, affinityTimeoutSec: 10800 }));
	assert.deepEqual([m.count, m.serviceId, m.flags, m.affinityTimeoutSec, m.backendIp, m.backendPort], [3, 700, 1, 10800, '0.0.0.0', 0]);
	const slot = lb4Slot(700, '10.244.1.7', 8080);
	assert.deepEqual([...slot.subarray(0, 6)], [10, 244, 1, 7, 0x1f, 0x90]);
	const b = decodeLb4Service(slot);
	assert.deepEqual([b.backendIp, b.backendPort, b.serviceId, b.count], ['10.244.1.7', 8080, 700, 0]);

	const ak = lb4AddressedKey(0x0102030405060708n, '10.244.1.7', 8080, IPPROTO.TCP);
	assert.equal(ak.length, Structs.weir_lb4_addressed_key.size);
	assert.equal(ak.readBigUInt64LE(0), 0x0102030405060708n);
	assert.equal(ak[14], IPPROTO.TCP);
	const av = encode('weir_lb4_addressed_value', { last_ns: 5n, address: ipv4ToInt('198.19.0.10'), port: 80, service_id: 9 });
	assert.deepEqual(decodeLb4Addressed(av), { lastNs: 5n, vip: '198.19.0.10', port: 80, serviceId: 9 });
});
