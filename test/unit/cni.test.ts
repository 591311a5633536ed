// The CNI's pure core: environment and config parsing (with a fuzzer), results in
// each version, the forwarder's wire format, IPAM version negotiation, the conflist.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SUPPORTED_VERSIONS, parseCniArgs, parseEnv, parseNetConf, replyVersion } from '../../src/cni-plugin/config.js';
import { CniCode, CniError } from '../../src/cni-plugin/errors.js';
import { buildResult, expectedFromPrev, formatResult, hostIfName, ipamAddress } from '../../src/cni-plugin/result.js';
import { decodeRequest, encodeRequest, encodeResponse, decodeResponse } from '../../src/cni-plugin/wire.js';
import { negotiate } from '../../src/cni-plugin/ipam.js';
import { buildConflist } from '../../src/cni-plugin/conflist.js';
import { EndpointStore, EndpointRecord } from '../../src/cni-plugin/endpoint-store.js';

function codeOf(fn: () => unknown): number {
	try {
		fn();
	} catch (err) {
		assert.ok(err instanceof CniError, `not a CniError: ${String(err)}`);
		return err.code;
	}
	return 0;
}

const goodEnv = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc123', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
const goodConf = { cniVersion: '1.0.0', name: 'weir', type: 'weir-cni', ipam: { type: 'host-local', ranges: [[{ subnet: '10.0.0.0/24' }]] } };

describe('CNI environment', () => {
	test('valid ADD environment', () => {
		const env = parseEnv({ ...goodEnv, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p' });
		assert.equal(env.command, 'ADD');
		assert.deepEqual(env.path, ['/opt/cni/bin']);
		assert.equal(env.args['K8S_POD_NAME'], 'p');
	});
	test('each missing or invalid variable is code 4', () => {
		for (const bad of [
			{ CNI_COMMAND: undefined },
			{ CNI_COMMAND: 'frob' },
			{ CNI_CONTAINERID: '' },
			{ CNI_CONTAINERID: '-bad id' },
			{ CNI_IFNAME: '' },
			{ CNI_IFNAME: 'sixteen-chars-xx' },
			{ CNI_IFNAME: 'a/b' },
			{ CNI_NETNS: '' },
			{ CNI_NETNS: 'relative/path' },
			{ CNI_PATH: '' },
			{ CNI_ARGS: 'novalue' },
		]) {
			assert.equal(
				codeOf(() => parseEnv({ ...goodEnv, ...bad })),
				CniCode.InvalidEnv,
				JSON.stringify(bad),
			);
		}
	});
	test('DEL without a netns is valid (best effort); VERSION needs only the command', () => {
		assert.equal(parseEnv({ ...goodEnv, CNI_COMMAND: 'DEL', CNI_NETNS: '' }).netns, '');
		assert.equal(parseEnv({ CNI_COMMAND: 'VERSION' }).command, 'VERSION');
	});
	test('CNI_ARGS', () => {
		assert.deepEqual(parseCniArgs('A=1;B=x=y;;'), { A: '1', B: 'x=y' });
		assert.deepEqual(parseCniArgs(undefined), {});
	});
});

describe('network configuration', () => {
	test('valid config', () => {
		const c = parseNetConf(JSON.stringify({ ...goodConf, mtu: 1450, dns: { nameservers: ['10.96.0.10'], search: ['svc'] } }));
		assert.equal(c.name, 'weir');
		assert.equal(c.mtu, 1450);
		assert.deepEqual(c.dns, { nameservers: ['10.96.0.10'], search: ['svc'] });
		assert.equal(c.ipam.type, 'host-local');
	});
	test('spec codes', () => {
		assert.equal(
			codeOf(() => parseNetConf('{not json')),
			CniCode.Decode,
		);
		assert.equal(
			codeOf(() => parseNetConf('[1,2]')),
			CniCode.Decode,
		);
		assert.equal(
			codeOf(() => parseNetConf(JSON.stringify({ ...goodConf, cniVersion: '0.3.1' }))),
			CniCode.IncompatibleVersion,
		);
		assert.equal(
			codeOf(() => parseNetConf(JSON.stringify({ ...goodConf, cniVersion: '2.0.0' }))),
			CniCode.IncompatibleVersion,
		);
		assert.equal(
			codeOf(() => parseNetConf(JSON.stringify({ ...goodConf, name: '' }))),
			CniCode.InvalidConfig,
		);
		assert.equal(
			codeOf(() => parseNetConf(JSON.stringify({ ...goodConf, ipam: undefined }))),
			CniCode.InvalidConfig,
		);
		assert.equal(
			codeOf(() => parseNetConf(JSON.stringify({ ...goodConf, ipam: { type: '../x' } }))),
			CniCode.InvalidConfig,
		);
		assert.equal(
			codeOf(() => parseNetConf(JSON.stringify({ ...goodConf, mtu: 70000 }))),
			CniCode.InvalidConfig,
		);
		assert.equal(
			codeOf(() => parseNetConf(JSON.stringify({ ...goodConf, dns: { nameservers: [1] } }))),
			CniCode.InvalidConfig,
		);
		assert.equal(
			codeOf(() => parseNetConf(JSON.stringify(goodConf), 'GC')),
			CniCode.InvalidConfig,
		);
	});
	test('replyVersion takes the request version when readable', () => {
		assert.equal(replyVersion('{"cniVersion":"0.4.0"}'), '0.4.0');
		assert.equal(replyVersion('garbage'), '1.1.0');
	});

	test('fuzz: 20 000 generated inputs give a valid config or a spec error, never a crash', () => {
		let seed = 12345;
		const rnd = (): number => {
			seed = (seed * 1103515245 + 12345) & 0x7fffffff;
			return seed / 0x7fffffff;
		};
		const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
		const values: unknown[] = [
			null,
			true,
			0,
			-1,
			1.5,
			Number.POSITIVE_INFINITY,
			'',
			'x',
			'1.0.0',
			'0.4.0',
			'1.1.0',
			'host-local',
			[],
			{},
			[1],
			['a'],
			{ type: 'host-local' },
			'é\u0000',
			68,
			65535,
			9000,
		];
		const keys = [
			'cniVersion',
			'name',
			'type',
			'ipam',
			'mtu',
			'dns',
			'agentSocket',
			'prevResult',
			'cni.dev/valid-attachments',
			'runtimeConfig',
			'args',
			'__proto__',
			'constructor',
		];
		const gen = (depth: number): unknown => {
			const r = rnd();
			if (depth > 3 || r < 0.5) return pick(values);
			if (r < 0.75) {
				const o: Record<string, unknown> = {};
				for (let i = 0; i < 1 + Math.floor(rnd() * 5); i++) o[pick(keys)] = gen(depth + 1);
				return o;
			}
			return Array.from({ length: Math.floor(rnd() * 3) }, () => gen(depth + 1));
		};
		const mutate = (s: string): string => {
			const ops = Math.floor(rnd() * 3);
			let out = s;
			for (let i = 0; i < ops; i++) {
				const at = Math.floor(rnd() * (out.length + 1));
				const r = rnd();
				if (r < 0.4) out = out.slice(0, at) + out.slice(at + 1);
				else if (r < 0.8) out = out.slice(0, at) + pick(['{', '}', '"', ',', ':', '[', '\\', '0', 'e', ' ']) + out.slice(at);
				else out = out.slice(0, at);
			}
			return out;
		};
		const counts = { valid: 0, errors: new Map<number, number>() };
		const allowed = new Set<number>([CniCode.IncompatibleVersion, CniCode.Decode, CniCode.InvalidConfig]);
		for (let i = 0; i < 20_000; i++) {
			let input: string;
			const r = rnd();
			if (r < 0.3) {
				// a valid config with some fields replaced
				const o: Record<string, unknown> = { ...goodConf };
				for (let k = 0; k < 1 + Math.floor(rnd() * 2); k++) o[pick(keys)] = gen(1);
				input = JSON.stringify(o);
			} else if (r < 0.6) {
				input = JSON.stringify(gen(0)) ?? '';
			} else {
				input = mutate(JSON.stringify({ ...goodConf, mtu: 1500, dns: { nameservers: ['10.0.0.10'] } }));
			}
			const command = pick(['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'] as const);
			try {
				const c = parseNetConf(input, command);
				// A returned config is fully valid.
				assert.ok((SUPPORTED_VERSIONS as readonly string[]).includes(c.cniVersion));
				assert.match(c.name, /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/);
				assert.equal(typeof c.type, 'string');
				if (command !== 'STATUS' && command !== 'VERSION') assert.equal(typeof c.ipam.type, 'string');
				if (c.mtu !== undefined) assert.ok(Number.isInteger(c.mtu) && c.mtu >= 68 && c.mtu <= 65535);
				counts.valid++;
			} catch (err) {
				if (!(err instanceof CniError)) throw new Error(`input ${JSON.stringify(input)} threw ${String(err)}`);
				assert.ok(allowed.has(err.code), `code ${err.code} for ${input}`);
				assert.ok(err.message.length > 0);
				counts.errors.set(err.code, (counts.errors.get(err.code) ?? 0) + 1);
			}
		}
		// The generator reaches both outcomes and every error class.
		assert.ok(counts.valid > 100, `valid: ${counts.valid}`);
		for (const c of allowed) assert.ok((counts.errors.get(c) ?? 0) > 10, `code ${c}: ${counts.errors.get(c)}`);
	});
});

describe('results', () => {
	const outcome = {
		hostIf: { name: 'lxc0123456789ab', mac: 'aa:bb:cc:dd:ee:01', mtu: 1500 },
		podIf: { name: 'eth0', mac: 'aa:bb:cc:dd:ee:02', mtu: 1500, sandbox: '/run/netns/p' },
		ip: '10.0.0.5',
	};
	test('host interface names: lxc + 12 hex, deterministic, at most 15 bytes', () => {
		const a = hostIfName('container-a', 'eth0');
		assert.match(a, /^lxc[0-9a-f]{12}$/);
		assert.equal(a, hostIfName('container-a', 'eth0'));
		assert.notEqual(a, hostIfName('container-a', 'eth1'));
		assert.notEqual(a, hostIfName('container-b', 'eth0'));
	});
	test('1.1.0, 1.0.0 and 0.4.0 shapes', () => {
		const r = buildResult('1.1.0', { ...outcome, dns: { nameservers: ['10.96.0.10'] } });
		const v11 = formatResult(r, '1.1.0');
		assert.deepEqual(v11['ips'], [{ address: '10.0.0.5/32', gateway: '169.254.1.1', interface: 1 }]);
		assert.equal((v11['interfaces'] as Array<{ mtu?: number }>)[1]!.mtu, 1500);
		assert.deepEqual(v11['dns'], { nameservers: ['10.96.0.10'] });
		const v10 = formatResult(r, '1.0.0');
		assert.equal((v10['interfaces'] as Array<{ mtu?: number }>)[1]!.mtu, undefined);
		const v04 = formatResult(r, '0.4.0');
		assert.equal((v04['ips'] as Array<{ version: string }>)[0]!.version, '4');
		assert.equal(formatResult(buildResult('1.0.0', outcome), '1.0.0')['dns'], undefined);
	});
	test('IPAM results of either version; exactly one IPv4 address', () => {
		assert.deepEqual(ipamAddress({ cniVersion: '1.0.0', ips: [{ address: '10.0.0.7/24', gateway: '10.0.0.1' }] }, 'host-local'), {
			ip: '10.0.0.7',
			prefix: 24,
		});
		assert.equal(ipamAddress({ cniVersion: '0.4.0', ips: [{ version: '4', address: '10.0.0.8/24' }] }, 'h').ip, '10.0.0.8');
		assert.equal(
			codeOf(() => ipamAddress({ ips: [] }, 'h')),
			CniCode.InvalidConfig,
		);
		assert.equal(
			codeOf(() => ipamAddress({ ips: [{ address: 'fd00::1/64' }] }, 'h')),
			CniCode.InvalidConfig,
		);
		assert.equal(
			codeOf(() => ipamAddress('nonsense', 'h')),
			CniCode.Other,
		);
	});
	test('CHECK expectations from prevResult', () => {
		const prev = formatResult(buildResult('1.0.0', outcome), '1.0.0');
		assert.deepEqual(expectedFromPrev(prev, 'eth0', '/run/netns/p'), { hostIf: 'lxc0123456789ab', podIf: 'eth0', ip: '10.0.0.5', podMac: 'aa:bb:cc:dd:ee:02' });
		assert.equal(
			codeOf(() => expectedFromPrev(undefined, 'eth0', '/x')),
			CniCode.InvalidConfig,
		);
		assert.equal(
			codeOf(() => expectedFromPrev(prev, 'eth9', '/run/netns/p')),
			CniCode.InvalidConfig,
		);
	});
});

describe('forwarder wire format, IPAM versions, conflist, endpoint store', () => {
	test('request and response round trip', () => {
		const req = { env: { CNI_COMMAND: 'ADD', CNI_ARGS: 'A=1;B=2' }, stdin: Buffer.from('{"x":"a=b\\u0000"}') };
		assert.deepEqual(decodeRequest(encodeRequest(req)), req);
		assert.deepEqual(decodeResponse(encodeResponse(1, '{"code":11}\n')), { code: 1, stdout: '{"code":11}\n' });
		assert.equal(
			codeOf(() => decodeRequest(Buffer.from('HTTP/1.1 GET /'))),
			CniCode.Decode,
		);
		assert.equal(
			codeOf(() => decodeRequest(Buffer.from('WEIRCNI1\nA=1'))),
			CniCode.Decode,
		);
	});
	test('IPAM version negotiation', () => {
		assert.equal(negotiate('1.1.0', ['0.3.1', '0.4.0', '1.0.0']), '1.0.0');
		assert.equal(negotiate('0.4.0', ['0.4.0', '1.0.0']), '0.4.0');
		assert.equal(negotiate('0.4.0', ['1.0.0']), undefined);
	});
	test('conflist: weir first, portmap chained', () => {
		const c = buildConflist({ name: 'weir', cniVersion: '1.0.0', agentSocket: '/var/run/weir/cni.sock', podCidr: '10.244.1.0/24', portmap: true });
		const plugins = c['plugins'] as Array<Record<string, unknown>>;
		assert.deepEqual(
			plugins.map((p) => p['type']),
			['weir-cni', 'portmap'],
		);
		assert.deepEqual(plugins[0]!['ipam'], { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]] });
		// What the agent writes is what the plugin accepts.
		const single = { cniVersion: c['cniVersion'], name: c['name'], ...plugins[0] };
		assert.equal(parseNetConf(JSON.stringify(single)).agentSocket, '/var/run/weir/cni.sock');
	});
	test('endpoint store: persisted, ids reused, only ready records are endpoints', () => {
		const dir = mkdtempSync(join(tmpdir(), 'weir-store-'));
		try {
			const file = join(dir, 'e.json');
			const s = new EndpointStore(file);
			let changes = 0;
			s.onChange(() => changes++);
			const rec = (id: string, state: 'adding' | 'ready'): EndpointRecord => ({
				containerId: id,
				ifname: 'eth0',
				netns: '/x',
				network: 'n',
				namespace: 'ns',
				pod: id,
				hostIf: hostIfName(id, 'eth0'),
				hostIfindex: 7,
				epId: s.allocateEpId(),
				ip: `10.0.0.${id.length}`,
				state,
				ipam: { type: 'host-local', path: ['/b'], args: '', conf: {} },
				ipamAllocated: true,
				createdAt: '',
			});
			s.put(rec('a', 'ready'));
			s.put(rec('bb', 'adding'));
			assert.deepEqual(
				s.list().map((e) => e.pod),
				['a'],
			);
			assert.equal(changes, 1);
			const again = new EndpointStore(file);
			assert.equal(again.all().length, 2);
			assert.deepEqual(
				again.all().map((r) => r.epId),
				[1, 2],
			);
			again.remove('a', 'eth0');
			assert.equal(again.allocateEpId(), 1);
		} finally {
			rmSync(dir, { recursive: true, force: true });
		}
	});
});
