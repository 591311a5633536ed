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
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Datapath, removePinRoot, uninstallPins } from '../../src/kernel/datapath.js';
import { EndpointFlags, IpcacheFlags } from '../../src/kernel/layout.js';
import { captureRoutingInstalled, removeCaptureRouting } from '../../src/kernel/capture.js';
import { MESH_KEY } from '../../src/shared/mesh.js';
import type { AgentStatus } from '../../src/shared/agent-status.js';
import type { Flow } from '../../src/shared/wire.js';
import { repoRoot } from '../../src/shared/package.js';
import { NODE_IP, type Pod } from '../../hack/lab/topology.js';
import { ensureBpffs, requireRoot, testPinRoot } from '../helpers/bpf.js';
import { LbLab, type LbClient } from '../helpers/lb-lab.js';
import { Ztunnel } from '../helpers/ztunnel-process.js';
import type { FakeApiObject, FakeApiRequest } from '../helpers/fake-api.js';

const AGENT = resolve(repoRoot, 'dist/src/agent/main.js');
const HOST_SETUP = resolve(repoRoot, 'dist/src/host-setup/main.js');
const FAKE_API = resolve(repoRoot, 'dist/test/helpers/fake-api.js');
const NODE = 'lab-node';
const API_PORT = 6443; // inside the lab node namespace: no other listener there
const OBSERVER = 'http://127.0.0.1:9962';
const VIP = '198.19.0.10';
const POD = { client: '10.216.0.10', plain: '10.216.0.11', server: '10.216.0.20' } as const;
const NS = { client: 'mesh-a', plain: 'plain', server: 'mesh-a' } as const;
const WEB = 8080;

const PODS = '/api/v1/pods';
const NAMESPACES = '/api/v1/namespaces';

/** The stand-in API server, and the test's hands in the node namespace. */
class FakeApi {
	private next = 0;
	private readonly waiting = new Map<number, (a: Record<string, unknown>) => void>();
	private constructor(readonly child: ChildProcess) {
		createInterface({ input: child.stdout! }).on('line', (line) => {
			const a = JSON.parse(line) as Record<string, unknown>;
			if (typeof a['id'] === 'number') this.waiting.get(a['id'])?.(a);
		});
	}

	static async start(nodeNs: string, children: Set<ChildProcess>): Promise<FakeApi> {
		const child = spawn('ip', ['netns', 'exec', nodeNs, process.execPath, FAKE_API, String(API_PORT)], { stdio: ['pipe', 'pipe', 'inherit'] });
		children.add(child);
		child.on('exit', () => children.delete(child));
		await new Promise<void>((res, rej) => {
			const timer = setTimeout(() => rej(new Error('the fake API server did not start')), 10_000);
			child.stdout!.once('data', () => {
				clearTimeout(timer);
				res();
			});
		});
		return new FakeApi(child);
	}

	private ask(c: FakeApiRequest): Promise<Record<string, unknown>> {
		const id = this.next++;
		return new Promise((res, rej) => {
			this.waiting.set(id, (a) => {
				this.waiting.delete(id);
				if (a['ok']) res(a);
				else rej(new Error(String(a['error'])));
			});
			this.child.stdin!.write(`${JSON.stringify({ ...c, id })}\n`);
		});
	}

	async put(path: string, object: FakeApiObject): Promise<void> {
		await this.ask({ cmd: 'put', path, object });
	}

	/** A GET from inside the node namespace (the agent's observer API listens there). */
	async get(url: string): Promise<{ status: number; body: string }> {
		const a = await this.ask({ cmd: 'get', url });
		return { status: a['status'] as number, body: a['body'] as string };
	}
}

const namespace = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const pod = (ns: string, name: string, ip: string, annotations?: Record<string, string>) => ({
	apiVersion: 'v1',
	kind: 'Pod',
	metadata: { namespace: ns, name, labels: { app: name }, ...(annotations ? { annotations } : {}) },
	spec: { nodeName: NODE, containers: [{ name: 'main', image: 'x' }] },
	status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});

async function until(what: string | (() => string), pred: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	while (!(await pred())) {
		if (Date.now() > deadline) throw new Error(`timed out waiting: ${typeof what === 'string' ? what : what()}`);
		await new Promise((r) => setTimeout(r, 50));
	}
}

describe('mesh opt-in through the agent (real agent, real kernel)', () => {
	const children = new Set<ChildProcess>();
	let lab: LbLab;
	let api: FakeApi;
	let zt: Ztunnel | undefined;
	let dp: Datapath | undefined;
	let agent: ChildProcess | undefined;
	let client: LbClient, plain: LbClient;
	let nodeNs = '';
	let work = '';
	const pinRoot = testPinRoot('mesh');

	const agentLog = (): string => {
		try {
			return readFileSync(join(work, 'agent.log'), 'utf8').slice(-3000);
		} catch {
			return '(no agent log)';
		}
	};

	/** Starts weir-agent in the node namespace (nsenter: only the network namespace changes, bpffs and cgroups stay in view). */
	async function startAgent(extra: string[] = []): Promise<void> {
		const logFd = openSync(join(work, 'agent.log'), 'a');
		try {
			const a = spawn(
				'nsenter',
				[
					`--net=${nodeNs}`,
					'--',
					process.execPath,
					AGENT,
					'--node-name',
					NODE,
					'--pin-root',
					pinRoot,
					'--kubeconfig',
					join(work, 'kubeconfig'),
					'--endpoints-file',
					join(work, 'endpoints.json'),
					'--ztunnel-flow-socket',
					join(work, 'ztunnel', 'flows.sock'),
					'--observer-host',
					'127.0.0.1',
					'--cgroup-root',
					lab.cgroup,
					...extra,
				],
				{ stdio: ['ignore', logFd, logFd] },
			);
			agent = a;
			children.add(a);
			a.on('exit', () => children.delete(a));
		} finally {
			closeSync(logFd);
		}
		await until(
			() => `the agent is ready; log:\n${agentLog()}`,
			async () => {
				if (agent?.exitCode !== null) throw new Error(`the agent exited (${agent?.exitCode}); log:\n${agentLog()}`);
				return (await api.get(`${OBSERVER}/readyz`).catch(() => ({ status: 0 }))).status === 200;
			},
			20_000,
		);
	}

	async function stopAgent(): Promise<void> {
		const a = agent;
		agent = undefined;
		if (!a || a.exitCode !== null || a.signalCode !== null) return;
		const gone = new Promise((r) => a.once('exit', r));
		a.kill('SIGTERM');
		await gone;
	}

	async function status(): Promise<AgentStatus> {
		return JSON.parse((await api.get(`${OBSERVER}/v1/status`)).body) as AgentStatus;
	}

	const clientFlags = (): number => dp!.endpoint(POD.client)?.flags ?? -1;
	const addrFlags = (ip: string): number => dp!.ipcacheEntries().find((e) => e.cidr === `${ip}/32`)?.flags ?? -1;
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
		requireRoot();
		ensureBpffs();
		work = mkdtempSync(join(tmpdir(), 'weir-mesh-agent-'));
		lab = await LbLab.create(
			'mesh',
			Object.entries(POD).map(([name, ip]) => ({ name, ip })),
		);
		nodeNs = `/run/netns/${lab.topo.nodeNs}`;
		await lab.ident(lab.pod('server'), 'srv', [WEB]);
		await lab.ident(lab.pod('plain'), 'plain', [WEB]);
		// The pod programs on the veths, as the CNI attaches them.
		dp = await Datapath.open({ pinRoot });
		for (const p of lab.topo.pods) dp.attach(p.hostIfindex, { netns: nodeNs });
		writeFileSync(
			join(work, 'endpoints.json'),
			JSON.stringify(
				(['client', 'plain', 'server'] as const).map((name, i) => {
					const p = lab.pod(name);
					return { namespace: NS[name], pod: name, ip: p.ip, epId: 40 + i, ifindex: p.hostIfindex };
				}),
			),
		);
		writeFileSync(
			join(work, 'kubeconfig'),
			JSON.stringify({
				apiVersion: 'v1',
				kind: 'Config',
				clusters: [{ name: 'lab', cluster: { server: `http://127.0.0.1:${API_PORT}`, 'insecure-skip-tls-verify': true } }],
				users: [{ name: 'lab', user: {} }],
				contexts: [{ name: 'lab', context: { cluster: 'lab', user: 'lab' } }],
				'current-context': 'lab',
			}),
		);

		api = await FakeApi.start(lab.topo.nodeNs, children);
		await api.put('/api/v1/nodes', { metadata: { name: NODE }, status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] } });
		for (const ns of new Set(Object.values(NS))) await api.put(NAMESPACES, namespace(ns));
		for (const name of ['client', 'plain', 'server'] as const) await api.put(PODS, pod(NS[name], name, POD[name]));
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

		zt = await Ztunnel.start(lab.topo.nodeNs, children);
		await startAgent();
		client = lab.client(lab.pod('client'), { inCgroup: true });
		plain = lab.client(lab.pod('plain'), { inCgroup: true });
	});

	after(async () => {
		try {
			await stopAgent().catch(() => undefined);
			for (const c of children) c.kill('SIGKILL');
			await zt?.kill();
			dp?.close();
			if (nodeNs && existsSync(nodeNs)) await removeCaptureRouting(nodeNs);
		} finally {
			try {
				if (existsSync(pinRoot)) uninstallPins(pinRoot);
				removePinRoot(pinRoot);
			} finally {
				await lab?.destroy();
				if (work && !process.env['WEIR_KEEP_TEST_DIR']) rmSync(work, { recursive: true, force: true });
			}
		}
	});

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
		const flows = (JSON.parse((await api.get(`${OBSERVER}/v1/flows?limit=1000`)).body) as { flows: Flow[] }).flows;
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
		dp?.close();
		dp = undefined;
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
