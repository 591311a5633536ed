// PeerAuthentication STRICT through the whole agent, with real sockets: a real
// weir-agent process in a lab node namespace watching a stand-in API server
// (test/helpers/agent-lab.ts, fake-api.ts) that starts without Istio's
// PeerAuthentication CRD, the pod programs on lab pods' veths, and a lab ztunnel. The
// test only changes API objects. With the CRD absent the agent is ready and nothing is
// STRICT; when the CRD appears with a STRICT PeerAuthentication for a meshed server, a
// non-meshed client's connect to it fails and is a DROPPED MTLS_REQUIRED flow naming the
// policy, while the ztunnel's marked delivery with the client's address gets in (and a
// meshed client's connection, through the ztunnel); a PERMISSIVE port under STRICT
// lets the plain client in there only; a restarted agent whose PeerAuthentication list
// is slow keeps the pod STRICT throughout; PERMISSIVE lets the plain client in again. Needs root; removes every
// namespace, process, cgroup and pin it made, also on failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Datapath } from '../../src/kernel/datapath.js';
import { EndpointFlags, MtlsPortMode } from '../../src/kernel/layout.js';
import { MESH_KEY } from '../../src/shared/mesh.js';
import { NODE_IP } from '../../hack/lab/topology.js';
import type { LbClient } from '../helpers/lb-lab.js';
import { AgentLab, until } from '../helpers/agent-lab.js';
import { AGENT_OPTIONAL_LIST_KINDS } from '../helpers/watch-paths.js';

const NODE = 'lab-node';
const PA = Object.keys(AGENT_OPTIONAL_LIST_KINDS).find((p) => p.endsWith('/peerauthentications'))!;
const POD = { plain: '10.217.0.10', meshed: '10.217.0.11', server: '10.217.0.20' } as const;
const NS = { plain: 'plain', meshed: 'mesh-b', server: 'mesh-b' } as const;
const EP = { plain: 50, meshed: 51, server: 52 } as const;
const WEB = 8080; // relayed by the lab ztunnel to its original destination
const OPEN = 8081;

const peerAuthentication = (name: string, spec: object) => ({
	apiVersion: 'security.istio.io/v1',
	kind: 'PeerAuthentication',
	metadata: { namespace: NS.server, name, creationTimestamp: '2026-01-01T00:00:00Z' },
	spec,
});

describe('PeerAuthentication STRICT through the agent (real agent, real kernel, real sockets)', () => {
	const env = new AgentLab('mtls', NODE);
	let plain: LbClient, meshed: LbClient;
	const dp = (): Datapath => env.dp!;
	const api = () => env.api;
	const agent = () => env.agent;

	const serverFlags = (): number => dp().endpoint(POD.server)?.flags ?? -1;
	const strict = (): boolean => (serverFlags() & EndpointFlags.MtlsStrict) !== 0;
	const portEntries = (): string[] =>
		dp()
			.mtlsPortEntries()
			.map((e) => `${e.epId}:${e.port}=${e.mode}`)
			.sort();
	const dropped = (): bigint =>
		dp()
			.readMetrics()
			.samples.find((m) => m.reasonName === 'MTLS_REQUIRED' && m.direction === 'ingress')?.packets ?? 0n;

	before(async () => {
		// The stand-in API server has no PeerAuthentication CRD yet.
		await env.create(
			(['plain', 'meshed', 'server'] as const).map((name) => ({ name, ip: POD[name], namespace: NS[name], epId: EP[name] })),
			{ [NS.plain]: {}, [NS.server]: { [MESH_KEY]: 'enabled' } },
		);
		await env.lab.ident(env.lab.pod('server'), 'srv', [WEB, OPEN]);
		await assert.rejects(api().put(PA, peerAuthentication('early', {})), /not installed/, 'the stand-in has no such CRD');
		await agent().start();
		plain = env.lab.client(env.lab.pod('plain'), { inCgroup: true });
		meshed = env.lab.client(env.lab.pod('meshed'), { inCgroup: true });
	});

	after(() => env.destroy());

	test('the CRD absent: the agent is ready and says so once; the meshed server is PERMISSIVE and the plain client connects', async () => {
		await until('the server flagged meshed', () => serverFlags() === EndpointFlags.Meshed);
		const r = await plain.tcp(POD.server, WEB);
		assert.deepEqual([r.ok, r.server, r.seen?.split(':')[0]], [true, 'srv', POD.plain], JSON.stringify(r));
		await new Promise((res) => setTimeout(res, 1500)); // several 404s
		const absent = agent()
			.logLines()
			.filter((l) => l['watch'] === 'peerauthentications' && /not served/.test(String(l['msg'])));
		assert.equal(absent.length, 1, `one line for the absent CRD:\n${agent().log()}`);
		assert.ok(
			!agent()
				.logLines()
				.some((l) => l['watch'] === 'peerauthentications' && l['level'] === 40),
			'no warning for it',
		);
		assert.equal((await agent().status()).ready, true);
	});

	test("the CRD appears with a STRICT PeerAuthentication: the plain client's connect fails as MTLS_REQUIRED naming it; the ztunnel's delivery and a meshed client's connection get in", async () => {
		await api().install(PA);
		await api().put(PA, peerAuthentication('strict', { mtls: { mode: 'STRICT' } }));
		await until(() => `the server STRICT (picked up by the watch's retry); log:\n${agent().log()}`, strict, 45_000);
		assert.equal(serverFlags(), EndpointFlags.Meshed | EndpointFlags.MtlsStrict);
		assert.equal(dp().endpoint(POD.plain)!.flags & EndpointFlags.MtlsStrict, 0, 'the client is not meshed: no mode applies');

		const before = dropped();
		const r = await plain.tcp(POD.server, WEB);
		assert.equal(r.ok, false, `refused: ${JSON.stringify(r)}`);
		assert.ok(dropped() > before, 'counted as MTLS_REQUIRED');
		await until('the DROPPED flow', async () =>
			(await agent().flows()).some((f) => f.dropReason === 'MTLS_REQUIRED' && f.source.ip === POD.plain && f.destination.port === WEB),
		);
		const flow = (await agent().flows()).find((f) => f.dropReason === 'MTLS_REQUIRED' && f.source.ip === POD.plain)!;
		assert.deepEqual([flow.verdict, flow.direction, flow.destination.pod, flow.destination.meshed], ['DROPPED', 'ingress', 'server', true]);
		assert.deepEqual(flow.isolatedBy, [{ kind: 'PeerAuthentication', namespace: NS.server, name: 'strict' }]);
		assert.match(flow.summary, /DROPPED \(MTLS_REQUIRED: the destination requires mutual TLS .*; isolated by PeerAuthentication mesh-b\/strict\)$/);

		// The ztunnel delivers with the client pod's address, over its marked socket: admitted.
		const d = await env.zt!.deliver(POD.plain, POD.server, WEB);
		assert.equal(d.event, 'delivered', JSON.stringify(d));
		assert.match(d.line ?? '', new RegExp(`^srv ${POD.plain.replaceAll('.', '\\.')}:\\d+$`), 'the server saw the client');
		// A meshed client's connection goes through the ztunnel (captured, relayed marked).
		const m = await meshed.tcp(POD.server, WEB);
		assert.deepEqual([m.ok, m.server, m.seen?.split(':')[0]], [true, 'srv', NODE_IP], JSON.stringify(m));
	});

	test('portLevelMtls: a PERMISSIVE port of the STRICT server lets the plain client in there, and only there', async () => {
		await api().put(
			PA,
			peerAuthentication('server-ports', { selector: { matchLabels: { app: 'server' } }, portLevelMtls: { [OPEN]: { mode: 'PERMISSIVE' } } }),
		);
		await until('the port entry', () => portEntries().join() === `${EP.server}:${OPEN}=${MtlsPortMode.Permissive}`);
		assert.equal(serverFlags(), EndpointFlags.Meshed | EndpointFlags.MtlsStrict | EndpointFlags.MtlsPorts);
		const open = await plain.tcp(POD.server, OPEN);
		assert.deepEqual([open.ok, open.server], [true, 'srv'], JSON.stringify(open));
		assert.equal((await plain.tcp(POD.server, WEB)).ok, false, 'the other port stays STRICT');
		await api().delete(PA, NS.server, 'server-ports');
		await until('the entry gone', () => portEntries().length === 0 && !(serverFlags() & EndpointFlags.MtlsPorts));
		assert.equal((await plain.tcp(POD.server, OPEN)).ok, false, 'STRICT again');
	});

	test('a restarted agent keeps the server STRICT throughout: with their list slow, it compiles only once the PeerAuthentications are listed', async () => {
		await api().delay(PA, 1500);
		let cleared = false;
		let polling = true;
		const watch = (async () => {
			while (polling) {
				if (!strict()) cleared = true;
				await new Promise((r) => setTimeout(r, 2));
			}
		})();
		try {
			await agent().stop();
			await agent().start();
			await new Promise((r) => setTimeout(r, 500));
		} finally {
			polling = false;
			await watch;
			await api().delay(PA, 0);
		}
		assert.equal(cleared, false, 'never PERMISSIVE for a moment');
		assert.equal((await plain.tcp(POD.server, WEB)).ok, false);
	});

	test('switching to PERMISSIVE lets the plain client in', async () => {
		await api().put(PA, peerAuthentication('strict', { mtls: { mode: 'PERMISSIVE' } }));
		await until('not STRICT', () => serverFlags() === EndpointFlags.Meshed);
		const r = await plain.tcp(POD.server, WEB);
		assert.deepEqual([r.ok, r.server, r.seen?.split(':')[0]], [true, 'srv', POD.plain], JSON.stringify(r));
	});
});
