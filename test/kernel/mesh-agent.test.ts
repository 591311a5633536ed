// Mesh opt-in through the whole agent, for real: a real weir-agent process
// (dist/src/agent/main.js) in a lab node namespace, watching a stand-in API server in
// that namespace (test/helpers/fake-api.ts), its socket load balancer attached to a lab
// cgroup, the pod programs on lab pods' veths, and a lab ztunnel listening on 15001.
// The test only changes API objects: labelling the namespace of a client and a server
// weir.io/mesh=enabled makes the agent flag both endpoints and both addresses
// (compiled from the label), and the client's TCP to the server, by pod IP or by
// ClusterIP, lands in the ztunnel, while its TCP to a pod that is not meshed goes
// direct; the client's annotation opts it out; removing the label sends new
// connections direct again. The agent installs the capture routing at start in its
// namespace; `--mesh false` removes it and meshes nothing; weir-host-setup uninstall
// removes the routing with the pins. Needs root; removes every namespace, process,
// cgroup and pin it made, also on failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Datapath } from '../../src/kernel/datapath.js';
import { EndpointFlags, IpcacheFlags } from '../../src/kernel/layout.js';
import { captureRoutingInstalled } from '../../src/kernel/capture.js';
import { MESH_KEY } from '../../src/shared/mesh.js';
import { repoRoot } from '../../src/shared/package.js';
import { NODE_IP, type Pod } from '../../hack/lab/topology.js';
import type { LbClient, LbLab } from '../helpers/lb-lab.js';
import type { Ztunnel } from '../helpers/ztunnel-process.js';
import { AgentLab, type AgentProcess, type FakeApi, NAMESPACES, PODS, namespaceObject as namespace, podObject, until } from '../helpers/agent-lab.js';

const HOST_SETUP = resolve(repoRoot, 'dist/src/host-setup/main.js');
const NODE = 'lab-node';
const VIP = '198.19.0.10';
const POD = { client: '10.216.0.10', plain: '10.216.0.11', server: '10.216.0.20' } as const;
const NS = { client: 'mesh-a', plain: 'plain', server: 'mesh-a' } as const;
const WEB = 8080;

const pod = (ns: string, name: string, ip: string, annotations?: Record<string, string>) => podObject(NODE, ns, name, ip, annotations);

describe('mesh opt-in through the agent (real agent, real kernel)', () => {
	const env = new AgentLab('mesh', NODE);
	let lab: LbLab;
	let api: FakeApi;
	let zt: Ztunnel | undefined;
	let agent: AgentProcess;
	let client: LbClient, plain: LbClient;
	let nodeNs = '';
	let work = '';
	const pinRoot = env.pinRoot;
	const dp = (): Datapath | undefined => env.dp;
	const startAgent = (extra: string[] = []): Promise<void> => agent.start(extra);
	const stopAgent = async (): Promise<void> => agent?.stop();
	const status = () => agent.status();

	const clientFlags = (): number => dp()!.endpoint(POD.client)?.flags ?? -1;
	const addrFlags = (ip: string): number =>
		dp()!
			.ipcacheEntries()
			.find((e) => e.cidr === `${ip}/32`)?.flags ?? -1;
	/** the client's endpoint and the client's and the server's addresses all flagged meshed (true), or none (false) */
	const meshFlags = (): boolean | undefined => {
		const all = [clientFlags() & EndpointFlags.Meshed, addrFlags(POD.client) & IpcacheFlags.Meshed, addrFlags(POD.server) & IpcacheFlags.Meshed];
		return all.every((f) => f !== 0) ? true : all.every((f) => f === 0) ? false : undefined;
	};
	const captured = (from: Pod, port: number): boolean => zt!.events.some((e) => e.event === 'captured' && e.src?.address === from.ip && e.src.port === port);
	const portOf = (local: string | undefined): number => Number(local?.split(':')[1]);

	/** The client's connections to the server, by pod IP and by ClusterIP, go through the ztunnel; to the plain pod, direct. */
	async function expectCaptured(): Promise<void> {
		for (const [ip, port] of [
			[POD.server, WEB],
			[VIP, 80],
		] as const) {
			const r = await client.tcp(ip, port);
			assert.equal(r.server, 'srv', JSON.stringify(r));
			assert.ok(r.seen?.startsWith(`${NODE_IP}:`), `the server saw the ztunnel's connection from the node: ${JSON.stringify(r)}`);
			const cap = zt!.events.find((e) => e.event === 'captured' && e.src?.address === POD.client && e.src.port === portOf(r.local));
			// A ClusterIP is translated at connect() like any pod's: the backend is the original destination.
			assert.deepEqual(cap?.dst, { address: POD.server, port: WEB }, `captured, with the pod as original destination (${ip}:${port})`);
		}
		const toPlain = await client.tcp(POD.plain, WEB);
		assert.deepEqual([toPlain.server, toPlain.seen?.split(':')[0]], ['plain', POD.client], 'a pod that is not meshed is reached direct');
		assert.ok(!captured(lab.pod('client'), portOf(toPlain.local)));
	}

	async function expectDirect(who: LbClient = client): Promise<void> {
		const toPod = await who.tcp(POD.server, WEB);
		assert.equal(toPod.server, 'srv', JSON.stringify(toPod));
		assert.ok(toPod.seen?.startsWith(`${who.pod.ip}:`), `the server saw the pod itself: ${JSON.stringify(toPod)}`);
		assert.ok(!captured(who.pod, portOf(toPod.local)));
		const toVip = await who.tcp(VIP, 80);
		assert.equal(toVip.server, 'srv', `the ClusterIP is translated to the backend: ${JSON.stringify(toVip)}`);
		assert.ok(toVip.seen?.startsWith(`${who.pod.ip}:`));
	}

	before(async () => {
		await env.create(
			(['client', 'plain', 'server'] as const).map((name, i) => ({ name, ip: POD[name], namespace: NS[name], epId: 40 + i })),
			Object.fromEntries(Object.values(NS).map((ns) => [ns, {}])),
		);
		({ lab, api, agent, nodeNs, work } = env);
		zt = env.zt;
		await lab.ident(lab.pod('server'), 'srv', [WEB]);
		await lab.ident(lab.pod('plain'), 'plain', [WEB]);
		await api.put('/api/v1/services', {
			metadata: { namespace: NS.server, name: 'web' },
			spec: {
				type: 'ClusterIP',
				clusterIP: VIP,
				clusterIPs: [VIP],
				ports: [
					{ name: 'http', port: 80, targetPort: WEB, protocol: 'TCP' },
					{ name: 'dns', port: 53, targetPort: WEB, protocol: 'UDP' },
				],
			},
		});
		await api.put('/apis/discovery.k8s.io/v1/endpointslices', {
			metadata: { namespace: NS.server, name: 'web-1', labels: { 'kubernetes.io/service-name': 'web' } },
			addressType: 'IPv4',
			ports: [
				{ name: 'http', port: WEB, protocol: 'TCP' },
				{ name: 'dns', port: WEB, protocol: 'UDP' },
			],
			endpoints: [{ addresses: [POD.server], conditions: { ready: true } }],
		});
		await startAgent();
		client = lab.client(lab.pod('client'), { inCgroup: true });
		plain = lab.client(lab.pod('plain'), { inCgroup: true });
	});

	after(() => env.destroy());

	test('the agent installs the capture routing at start, in its own (the node’s) namespace', async () => {
		assert.equal(await captureRoutingInstalled(nodeNs), true);
		const s = await status();
		assert.deepEqual(s.mesh, { enabled: true, captureRouting: 'installed' });
	});

	test('pods in a namespace without the label are not meshed: direct, ClusterIPs translated', async () => {
		assert.equal(meshFlags(), false);
		await expectDirect();
		await expectDirect(plain);
		assert.equal((await status()).endpoints.meshed, 0);
	});

	test('labelling the namespace weir.io/mesh=enabled meshes its pods: the client’s TCP to the server lands in the ztunnel, by pod IP or by ClusterIP; to a pod that is not meshed, and its UDP, go as before', async () => {
		await api.put(NAMESPACES, namespace(NS.client, { [MESH_KEY]: 'enabled' }));
		await until('the endpoint and both addresses are flagged meshed', () => meshFlags() === true);
		assert.equal(addrFlags(POD.plain), 0, 'the plain pod is no meshed destination');
		await expectCaptured();
		const dns = (await client.udp(VIP, 53)).replies[0];
		assert.deepEqual([dns?.server, dns?.from], ['srv', `${VIP}:53`], 'UDP is not captured: translated and answered as before');
		// A pod that is not meshed reaches the meshed server direct.
		await expectDirect(plain);
		const s = await status();
		assert.equal(s.endpoints.meshed, 2, 'the client and the server');
		assert.deepEqual(s.mesh, { enabled: true, captureRouting: 'installed' });
		const flows = await agent.flows();
		const mine = flows.filter((f) => f.source.ip === POD.client && f.direction === 'egress');
		assert.ok(
			mine.some((f) => f.source.meshed === true),
			JSON.stringify(mine.map((f) => f.source)),
		);
		assert.ok(!flows.some((f) => f.source.ip === POD.plain && f.source.meshed), 'a pod that is not meshed is not named meshed');
	});

	test('the pod annotation weir.io/mesh: disabled opts that pod out, and back in without it', async () => {
		await api.put(PODS, pod(NS.client, 'client', POD.client, { [MESH_KEY]: 'disabled' }));
		await until(
			'the client’s flags are gone, the server’s stay',
			() => clientFlags() === 0 && addrFlags(POD.client) === 0 && addrFlags(POD.server) === IpcacheFlags.Meshed,
		);
		await expectDirect();
		await api.put(PODS, pod(NS.client, 'client', POD.client));
		await until('meshed again', () => meshFlags() === true);
		await expectCaptured();
	});

	test('removing the label: new connections go direct again', async () => {
		await api.put(NAMESPACES, namespace(NS.client));
		await until('the flags are gone', () => meshFlags() === false);
		await expectDirect();
		assert.equal((await status()).endpoints.meshed, 0);
	});

	test('--mesh false: no pod is meshed whatever its labels, and the routing is removed; mesh on again after a restart', async () => {
		await api.put(NAMESPACES, namespace(NS.client, { [MESH_KEY]: 'enabled' }));
		await until('meshed', () => meshFlags() === true);
		await stopAgent();
		assert.equal(meshFlags(), true, 'the pinned state outlives the agent');

		await startAgent(['--mesh', 'false']);
		await until('not meshed, routing removed', async () => meshFlags() === false && !(await captureRoutingInstalled(nodeNs)));
		await expectDirect();
		assert.deepEqual((await status()).mesh, { enabled: false, captureRouting: 'removed' });

		await stopAgent();
		await startAgent();
		assert.equal(await captureRoutingInstalled(nodeNs), true);
		await until('meshed again', () => meshFlags() === true);
		await expectCaptured();
	});

	test('weir-host-setup uninstall removes the capture routing with the pins', async () => {
		await stopAgent();
		env.dp?.close();
		env.dp = undefined;
		const out = await new Promise<string>((res, rej) => {
			const c = spawn(
				'nsenter',
				[
					`--net=${nodeNs}`,
					'--',
					process.execPath,
					HOST_SETUP,
					'uninstall',
					'--pin-root',
					pinRoot,
					'--cni-bin-dir',
					join(work, 'bin'),
					'--cni-conf-dir',
					join(work, 'conf'),
					'--run-dir',
					join(work, 'run'),
				],
				{ stdio: ['ignore', 'pipe', 'inherit'] },
			);
			let text = '';
			c.stdout!.on('data', (d: Buffer) => (text += d.toString()));
			c.on('exit', (code) => (code === 0 ? res(text) : rej(new Error(`uninstall exited ${code}: ${text}`))));
		});
		assert.match(out, /removed the capture routing/);
		assert.equal(await captureRoutingInstalled(nodeNs), false);
		assert.equal(existsSync(pinRoot), false);
	});
});
