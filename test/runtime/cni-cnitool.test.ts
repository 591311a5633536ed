// Real callers of the CNI: the reference cnitool (libcni, chained portmap) and the
// weir-cni executable itself, against the CNI node with its host side in a node
// network namespace. Traffic between the wired pods goes through the datapath.
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, ChildProcess } from 'node:child_process';
import { existsSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Datapath } from '../../src/kernel/datapath.js';
import { IPPROTO } from '../../src/kernel/codecs.js';
import { EndpointFlags } from '../../src/kernel/layout.js';
import { DatapathEvent } from '../../src/kernel/codecs.js';
import { repoRoot } from '../../src/shared/package.js';
import { CniLab, ping, resultIp, run } from '../helpers/cni-lab.js';

const probeScript = resolve(repoRoot, 'dist/hack/lab/probe.js');

function requireRoot(): void {
	assert.equal(process.getuid?.(), 0, 'the CNI runtime tests need root (network namespaces, bpffs)');
}

const labs: CniLab[] = [];
const children: ChildProcess[] = [];
function lab(opts: Parameters<typeof CniLab.create>[0] = {}): CniLab {
	const l = CniLab.create(opts);
	labs.push(l);
	return l;
}
afterEach(() => {
	for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
	const errors: string[] = [];
	for (const l of labs.splice(0)) {
		try {
			l.destroy();
		} catch (err) {
			errors.push((err as Error).message);
		}
	}
	if (errors.length) throw new Error(errors.join('; '));
});
after(() => {
	for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

async function serve(netnsPath: string, port: number): Promise<void> {
	const ns = netnsPath.split('/').pop()!;
	const child = spawn('ip', ['netns', 'exec', ns, process.execPath, probeScript, 'serve', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
	children.push(child);
	await new Promise<void>((res, rej) => {
		const t = setTimeout(() => rej(new Error('probe server did not start')), 10_000);
		child.stdout!.once('data', () => {
			clearTimeout(t);
			res();
		});
	});
}

async function connect(netnsPath: string, ip: string, port: number, timeoutMs = 1500): Promise<boolean> {
	const ns = netnsPath.split('/').pop()!;
	const r = await run('ip', ['netns', 'exec', ns, process.execPath, probeScript, 'connect', 'tcp', ip, String(port), String(timeoutMs)]);
	return r.stdout.trim() === 'ok';
}

async function assertNothingLeft(l: CniLab): Promise<void> {
	assert.deepEqual(await l.hostVeths(), [], 'host veths left behind');
	assert.deepEqual(l.ipamAllocations(), [], 'host-local allocations left behind');
	assert.deepEqual(l.linkPins(), [], 'tcx link pins left behind');
	assert.equal(l.endpointKeys(), 0, 'endpoint map entries left behind');
	assert.deepEqual(await l.hostRoutes(), [], 'host routes left behind');
}

describe('weir-cni under cnitool', () => {
	test('ADD / CHECK / DEL / DEL on two namespaces, traffic through the datapath, portmap chained, a policy drop as an event', async () => {
		requireRoot();
		const l = lab({ openIdentity: 300 });
		await l.startAgent();
		const a = l.addPodNs('a');
		const b = l.addPodNs('b');
		const addA = await l.cnitool('add', a, {
			capArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
			cniArgs: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=a',
		});
		assert.equal(addA.code, 0, addA.stderr + addA.stdout);
		const addB = await l.cnitool('add', b, { cniArgs: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=b' });
		assert.equal(addB.code, 0, addB.stderr + addB.stdout);
		const ipA = resultIp(addA.json);
		const ipB = resultIp(addB.json);
		assert.match(ipA, /^10\.77\.0\.\d+$/);
		assert.notEqual(ipA, ipB);
		const ifs = addA.json!['interfaces'] as Array<{ name: string; sandbox?: string }>;
		assert.equal(ifs.length, 2);
		assert.match(ifs[0]!.name, /^lxc[0-9a-f]{12}$/);
		assert.deepEqual({ name: ifs[1]!.name, sandbox: ifs[1]!.sandbox }, { name: 'eth0', sandbox: a });
		assert.deepEqual(addA.json!['routes'], [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }]);

		assert.equal((await l.cnitool('check', a)).code, 0);
		assert.equal((await l.cnitool('check', b)).code, 0);

		// Traffic both ways, then TCP to a server, directly and through the host port.
		assert.ok(await ping(a, ipB), 'a -> b ping');
		assert.ok(await ping(b, ipA), 'b -> a ping');
		await serve(a, 80);
		assert.ok(await connect(b, ipA, 80), 'b -> a:80');
		assert.ok(await connect(b, '192.0.2.1', 8080), 'b -> node:8080 (portmap DNAT to a:80)');

		// A NetworkPolicy-like entry: a becomes ingress-isolated with no allow entry.
		const dp = await Datapath.open({ pinRoot: l.pinRoot });
		const events: DatapathEvent[] = [];
		const unsubscribe = dp.subscribe((ev) => {
			if (ev.type !== 'sock-drop') events.push(ev);
		});
		try {
			const ep = dp.endpointEntries().find((e) => e.ip === ipA);
			assert.ok(ep, 'endpoint of a in the map');
			assert.equal(ep.identity, 300);
			dp.setEndpoint(ipA, { ...ep, flags: EndpointFlags.IngressIsolated });
			assert.equal(await connect(b, ipA, 80, 700), false, 'b -> a:80 must be dropped');
			const deadline = Date.now() + 3000;
			let drop: DatapathEvent | undefined;
			while (!drop && Date.now() < deadline) {
				drop = events.find(
					(e) => e.verdict === 'DROPPED' && e.direction === 'ingress' && e.src === ipB && e.dst === ipA && e.dport === 80 && e.protocol === IPPROTO.TCP,
				);
				await new Promise((r) => setTimeout(r, 20));
			}
			assert.ok(drop, `no drop event; got ${events.length} events`);
			assert.ok(await ping(a, ipB), 'a -> b still works (egress not isolated)');
		} finally {
			unsubscribe();
			dp.close();
		}

		// CHECK sees drift precisely.
		const ns = a.split('/').pop()!;
		await run('ip', ['-n', ns, 'route', 'del', 'default']);
		const drift = await l.cnitool('check', a);
		assert.notEqual(drift.code, 0);
		assert.match(drift.stderr + drift.stdout, /default route via 169\.254\.1\.1 dev eth0 is missing/);

		for (const ns of [a, a, b]) {
			const del = await l.cnitool('del', ns);
			assert.equal(del.code, 0, `DEL: ${del.stderr}${del.stdout}`);
		}
		await assertNothingLeft(l);
		await l.stopAgent();
	});

	test('spec errors: JSON on stdout, spec code, non-zero exit', async () => {
		requireRoot();
		const l = lab({ portmap: false });
		await l.startAgent();
		const pod = l.addPodNs('p');
		const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: pod, CNI_IFNAME: 'eth0' };
		const conf = JSON.stringify(l.netconf());
		const expectError = async (what: string, r: { code: number; json: Record<string, unknown> | undefined; stdout: string }, code: number): Promise<void> => {
			assert.notEqual(r.code, 0, `${what}: exit status`);
			assert.ok(r.json, `${what}: stdout is JSON: ${r.stdout}`);
			assert.equal(r.json['code'], code, `${what}: ${r.stdout}`);
			assert.equal(typeof r.json['msg'], 'string');
			assert.equal(typeof r.json['cniVersion'], 'string');
		};
		await expectError('malformed JSON', await l.plugin(env, '{"cniVersion": "1.0.0", '), 6);
		await expectError('unsupported cniVersion', await l.plugin(env, JSON.stringify(l.netconf({})).replace('"1.0.0"', '"0.2.0"')), 1);
		await expectError('missing CNI_CONTAINERID', await l.plugin({ ...env, CNI_CONTAINERID: '' }, conf), 4);
		await expectError('invalid CNI_IFNAME', await l.plugin({ ...env, CNI_IFNAME: 'a/very/long/name' }, conf), 4);
		await expectError('unknown CNI_COMMAND', await l.plugin({ ...env, CNI_COMMAND: 'FROB' }, conf), 4);
		await expectError('missing CNI_NETNS', await l.plugin({ ...env, CNI_NETNS: '' }, conf), 4);
		await expectError(
			'invalid config (no ipam)',
			await l.plugin(env, JSON.stringify({ cniVersion: '1.0.0', name: 'x', type: 'weir-cni', agentSocket: l.socket })),
			7,
		);
		await expectError('invalid config (bad mtu)', await l.plugin(env, JSON.stringify(l.netconf({ mtu: 12 }))), 7);

		// IPAM failure: host-local's own error comes back with its code.
		const badIpam = l.netconf({ ipam: { type: 'host-local', ranges: [[{ subnet: '10.77.0.0/24', rangeStart: '10.99.0.5' }]], dataDir: l.ipamDir } });
		const direct = await run('/usr/lib/cni/host-local', [], { env: { ...env, CNI_PATH: l.binDir }, input: JSON.stringify(badIpam) });
		assert.notEqual(direct.code, 0, 'host-local refuses the range');
		const viaWeir = await l.plugin(env, JSON.stringify(badIpam));
		await expectError('IPAM failure', viaWeir, direct.json!['code'] as number);
		assert.match(String(viaWeir.json!['msg']), /host-local/);
		assert.deepEqual(await l.hostVeths(), [], 'failed ADD rolled back');

		// CHECK of a container Weir never wired.
		const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: pod }], ips: [{ address: '10.77.0.9/32', interface: 0 }] };
		await expectError('unknown container', await l.plugin({ ...env, CNI_COMMAND: 'CHECK' }, JSON.stringify({ ...l.netconf(), prevResult: prev })), 3);

		// VERSION through the agent.
		const v = await l.plugin({ CNI_COMMAND: 'VERSION' }, JSON.stringify({ cniVersion: '1.0.0' }));
		assert.equal(v.code, 0);
		assert.deepEqual(v.json, { cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });

		// Agent down: 11 for ADD, 50 for STATUS.
		await l.stopAgent();
		await expectError('agent down', await l.plugin(env, conf), 11);
		await expectError('agent down (STATUS)', await l.plugin({ CNI_COMMAND: 'STATUS' }, conf), 50);
		// Nothing went to stdout but the error JSON (one object, nothing else).
		const down = await l.plugin(env, conf);
		assert.equal(down.stdout.trim().split('\n').length, 1);
	});

	test('cniVersion 1.1.0: STATUS, and GC removes what is not in cni.dev/valid-attachments', async () => {
		requireRoot();
		const l = lab({ portmap: false, cniVersion: '1.1.0', openIdentity: 300 });
		await l.startAgent();
		const st = await l.cnitool('status', '');
		assert.equal(st.code, 0, st.stderr);
		const keep = l.addPodNs('keep');
		const drop = l.addPodNs('drop');
		const rk = await l.cnitool('add', keep);
		assert.equal(rk.code, 0, rk.stderr);
		assert.equal(rk.json!['cniVersion'], '1.1.0');
		const rd = await l.cnitool('add', drop);
		assert.equal(rd.code, 0, rd.stderr);
		assert.equal((await l.hostVeths()).length, 2);
		const keepId = (await import('node:crypto')).createHash('sha512').update(keep).digest('hex').slice(0, 20);
		const gc = await l.plugin(
			{ CNI_COMMAND: 'GC' },
			JSON.stringify({ ...l.netconf(), 'cni.dev/valid-attachments': [{ containerID: `cnitool-${keepId}`, ifname: 'eth0' }] }),
		);
		assert.equal(gc.code, 0, gc.stdout);
		assert.equal((await l.hostVeths()).length, 1, 'GC removed the attachment not listed');
		assert.deepEqual(l.ipamAllocations(), [resultIp(rk.json)]);
		assert.equal((await l.cnitool('check', keep)).code, 0);
		assert.equal((await l.cnitool('del', keep)).code, 0);
		assert.equal((await l.cnitool('del', drop)).code, 0, 'DEL after GC is still success');
		await assertNothingLeft(l);
		await l.stopAgent();
	});

	test('30 parallel ADDs then 30 parallel DELs: unique addresses, all reachable, nothing leaked', async () => {
		requireRoot();
		const l = lab({ openIdentity: 300 });
		await l.startAgent();
		const N = 30;
		const pods = Array.from({ length: N }, (_, i) => l.addPodNs(`c${i}`));
		const adds = await Promise.all(pods.map((p, i) => l.cnitool('add', p, { cniArgs: `IgnoreUnknown=1;K8S_POD_NAMESPACE=load;K8S_POD_NAME=p${i}` })));
		adds.forEach((r, i) => assert.equal(r.code, 0, `ADD ${i}: ${r.stderr}${r.stdout}`));
		const ips = adds.map((r) => resultIp(r.json));
		assert.equal(new Set(ips).size, N, 'unique addresses');
		assert.equal(l.endpointKeys(), N);
		// Everyone reaches the next pod.
		const reach = await Promise.all(pods.map((p, i) => ping(p, ips[(i + 1) % N]!, 3)));
		assert.deepEqual(reach.map((ok, i) => (ok ? '' : `${i}`)).filter(Boolean), [], 'unreachable pods');
		const dels = await Promise.all(pods.map((p) => l.cnitool('del', p)));
		dels.forEach((r, i) => assert.equal(r.code, 0, `DEL ${i}: ${r.stderr}${r.stdout}`));
		await assertNothingLeft(l);
		assert.deepEqual(JSON.parse((await import('node:fs')).readFileSync(l.stateFile, 'utf8')).endpoints, []);
		await l.stopAgent();
	});

	test('agent restart: live endpoints survive (state file + pins), stale ones are removed at start', async () => {
		requireRoot();
		const l = lab({ portmap: false, openIdentity: 300 });
		await l.startAgent();
		const live = l.addPodNs('live');
		const gone = l.addPodNs('gone');
		const peer = l.addPodNs('peer');
		const ips: string[] = [];
		for (const ns of [live, gone, peer]) {
			const r = await l.cnitool('add', ns);
			assert.equal(r.code, 0, r.stderr);
			ips.push(resultIp(r.json));
		}
		await l.stopAgent();
		// While the agent is away: enforcement continues, and one pod's sandbox disappears.
		assert.ok(await ping(live, ips[2]!), 'traffic with no agent');
		l.delPodNs(gone);
		await l.startAgent();
		assert.equal((await l.hostVeths()).length, 2);
		assert.equal(l.ipamAllocations().length, 2, 'the stale pod released its address at start');
		assert.equal(l.endpointKeys(), 2);
		assert.equal(l.linkPins().length, 4);
		assert.equal((await l.cnitool('check', live)).code, 0, 'CHECK after restart (programs re-attached)');
		assert.ok(await ping(live, ips[2]!), 'traffic after restart');
		assert.equal((await l.cnitool('del', gone)).code, 0, 'DEL of the stale pod is still success');
		for (const ns of [live, peer]) assert.equal((await l.cnitool('del', ns)).code, 0);
		await assertNothingLeft(l);
		await l.stopAgent();
	});

	test('agent killed in the middle of an ADD: the retry succeeds and a later DEL leaves nothing', async () => {
		requireRoot();
		const l = lab({ portmap: false, ipamType: 'slow-ipam', openIdentity: 300 });
		// host-local, slowed down after allocating while a flag file exists.
		const flag = join(l.dir, 'slow');
		const started = join(l.dir, 'ipam-started');
		writeFileSync(
			join(l.binDir, 'slow-ipam'),
			`#!/bin/sh\nout=$(/usr/lib/cni/host-local); rc=$?\nif [ "$CNI_COMMAND" = ADD ] && [ -e ${flag} ]; then touch ${started}; sleep 4; fi\nprintf '%s' "$out"; exit $rc\n`,
		);
		chmodSync(join(l.binDir, 'slow-ipam'), 0o755);
		writeFileSync(flag, '');
		await l.startAgent();
		const pod = l.addPodNs('k');
		const pending = l.cnitool('add', pod);
		const deadline = Date.now() + 10_000;
		while (!existsSync(started) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
		assert.ok(existsSync(started), 'IPAM started');
		assert.equal(l.ipamAllocations().length, 1, 'address allocated before the kill');
		await l.stopAgent('SIGKILL');
		const failed = await pending;
		assert.notEqual(failed.code, 0);
		assert.match(failed.stderr + failed.stdout, /try again later/);
		rmSync(flag);
		// The runtime retries; the new agent has undone the interrupted ADD at start.
		await new Promise((r) => setTimeout(r, 4500)); // the orphaned IPAM call finishes
		await l.startAgent();
		const retry = await l.cnitool('add', pod);
		assert.equal(retry.code, 0, retry.stderr + retry.stdout);
		assert.equal(l.ipamAllocations().length, 1, 'exactly one address after the retry');
		assert.equal((await l.cnitool('check', pod)).code, 0);
		assert.equal((await l.cnitool('del', pod)).code, 0);
		await assertNothingLeft(l);
		await l.stopAgent();
	});
});
