// The ztunnel on the local cluster, Weir installed from deploy/: meshed pods talk over
// HBONE without any change to them. Namespaces mesh-a and mesh-b are labelled
// weir.io/mesh=enabled, plain is not. The client in mesh-a (node 0) reaches a server in
// mesh-b on node 1, by pod IP and by Service name: the server sees the client pod's
// own address, and node 1's ztunnel counts the connection as mutual TLS between the
// two SPIFFE identities (Istio's istio_tcp_* metrics); a server on the client's own
// node goes through the local path, counted the same way. The plain server is reached
// directly (no ztunnel counts it). A pod opted out by annotation is not captured.
// Removing mesh-b's label makes new connections direct; open ones keep working.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, clusterStatus, type Cluster } from '../../hack/cluster/cluster.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { waitFor } from '../../hack/cluster/exec.js';
import { scenarioManifests, type Workload } from '../../hack/demo/scenario.js';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULTS } from '../../src/shared/defaults.js';
import { weirCli } from '../../hack/demo/weir-cli.js';
import { inPod, installWeir, podOf, type PodInfo } from '../helpers/services-cluster.js';

const NAME = 'wzt';
const WEIR_NS = 'weir-system';
const run = async (cmd: string, args: string[]): Promise<string> => (await promisify(execFile)(cmd, args, { maxBuffer: 16 << 20 })).stdout;
const id = (ns: string): string => `spiffe://cluster.local/ns/${ns}/sa/default`;

interface Sample {
	labels: Record<string, string>;
	value: number;
}

function parseMetric(text: string, name: string): Sample[] {
	const out: Sample[] = [];
	for (const line of text.split('\n')) {
		if (!line.startsWith(`${name}{`)) continue;
		const close = line.lastIndexOf('}');
		const labels: Record<string, string> = {};
		for (const m of line.slice(name.length + 1, close).matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!;
		out.push({ labels, value: Number(line.slice(close + 1).trim()) });
	}
	return out;
}

async function ztunnelPod(k: Cluster, node: string): Promise<string> {
	const r = await k.kubectl([
		'-n',
		WEIR_NS,
		'get',
		'pods',
		'-l',
		'app.kubernetes.io/name=weir-ztunnel',
		'--field-selector',
		`spec.nodeName=${node}`,
		'-o',
		'jsonpath={.items[0].metadata.name}',
	]);
	assert.ok(r.stdout.trim(), `a ztunnel pod on ${node}`);
	return r.stdout.trim();
}

/** A node ztunnel's metrics, through the API server's pod proxy (as Prometheus in the cluster would scrape :15020). */
async function metrics(k: Cluster, node: string): Promise<string> {
	const pod = await ztunnelPod(k, node);
	return (await k.kubectl(['get', '--raw', `/api/v1/namespaces/${WEIR_NS}/pods/${pod}:15020/proxy/metrics`])).stdout;
}

/** Connections the destination ztunnel of `node` counted from `src` to `dst` (SPIFFE IDs), mutual TLS. */
async function mtlsOpened(k: Cluster, node: string, src: string, dst: string): Promise<number> {
	return parseMetric(await metrics(k, node), 'istio_tcp_connections_opened_total')
		.filter(
			(s) =>
				s.labels.reporter === 'destination' &&
				s.labels.source_principal === src &&
				s.labels.destination_principal === dst &&
				s.labels.connection_security_policy === 'mutual_tls',
		)
		.reduce((n, s) => n + s.value, 0);
}

/** wget in a pod; a failure's output carries what the ztunnels logged last and node 0's ipcache, for the operator reading the test. */
async function get(k: Cluster, from: PodInfo & { ns: string }, url: string): Promise<{ code: number; out: string }> {
	const r = await inPod(k, from.ns, from.pod, `timeout 8 wget -q -O - ${url} 2>&1`);
	if (r.code === 0) return r;
	const lines: string[] = [r.out];
	for (const n of k.nodes) {
		const logs = await k.kubectl(['-n', WEIR_NS, 'logs', '--tail=6', await ztunnelPod(k, n.name)], { allowFail: true });
		lines.push(`ztunnel on ${n.name}:`, logs.stdout.trim());
	}
	const ipc = await k
		.nodeExec(from.node, ['bpftool', 'map', 'dump', 'pinned', join(DEFAULTS.pinRoot, 'weir_ipcache')])
		.catch((e: Error) => ({ stdout: e.message }));
	lines.push(`ipcache on ${from.node}:`, ipc.stdout.slice(0, 3000));
	return { code: r.code, out: lines.join('\n') };
}

async function pod(k: Cluster, ns: string, app: string): Promise<PodInfo & { ns: string }> {
	return { ...(await podOf(k, ns, app)), ns };
}

describe('the ztunnel: meshed pods over HBONE', { timeout: 900_000 }, () => {
	let c: Cluster | undefined;
	let pids: number[] = [];
	after(async () => {
		if (!c) return;
		const rep = await c.stop();
		assert.deepEqual(rep.left, [], 'the cluster left nothing behind');
		assert.deepEqual(await leftovers(NAME, pids), []);
	});

	test('install, mesh two namespaces, mTLS between identities, client address kept, opt-out and label removal', async (t) => {
		assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
		c = await startCluster({ name: NAME, cni: 'none', kubeProxy: true, log: () => {} });
		pids = clusterStatus(NAME).processes.map((p) => p.pid);
		const k = c;
		const [n0, n1] = k.nodes.map((n) => n.name) as [string, string];
		await installWeir(k, (m) => t.diagnostic(m));
		await k.kubectl(['-n', WEIR_NS, 'rollout', 'status', 'daemonset/weir-ztunnel', '--timeout=240s'], { timeoutMs: 250_000 });

		const workloads: Workload[] = [
			{ namespace: 'mesh-a', name: 'client', node: n0 },
			{ namespace: 'mesh-b', name: 'server', node: n1 },
			{ namespace: 'mesh-b', name: 'near', node: n0 },
			{ namespace: 'plain', name: 'server', node: n1 },
			{ namespace: 'mesh-c', name: 'other', node: n0 },
		];
		const manifests = scenarioManifests(k.images.workload, workloads) as { items: Record<string, unknown>[] };
		for (const item of manifests.items) {
			const md = item['metadata'] as { name: string; labels?: Record<string, string> };
			if (item['kind'] === 'Namespace' && md.name.startsWith('mesh-')) md.labels = { ...md.labels, 'weir.io/mesh': 'enabled' };
		}
		await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(manifests) });
		// An opted-out client in mesh-a.
		const optOut = scenarioManifests(k.images.workload, [{ namespace: 'mesh-a', name: 'legacy', node: n0 }]) as { items: Record<string, unknown>[] };
		const dep = optOut.items.find((i) => i['kind'] === 'Deployment') as { spec: { template: { metadata: { annotations?: Record<string, string> } } } };
		dep.spec.template.metadata.annotations = { 'weir.io/mesh': 'disabled' };
		await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ ...optOut, items: optOut.items.filter((i) => i['kind'] !== 'Namespace') }) });

		const client = await pod(k, 'mesh-a', 'client');
		const legacy = await pod(k, 'mesh-a', 'legacy');
		const server = await pod(k, 'mesh-b', 'server');
		const near = await pod(k, 'mesh-b', 'near');
		const plain = await pod(k, 'plain', 'server');
		const other = await pod(k, 'mesh-c', 'other');

		await t.test('meshed pod → meshed pod on another node: through HBONE, the server sees the client pod', async () => {
			const before = await mtlsOpened(k, n1, id('mesh-a'), id('mesh-b'));
			// The first connect may race the ztunnel's certificate for the new pod's identity.
			let r = { code: -1, out: '' };
			await waitFor(
				'an answer through the mesh',
				60_000,
				async () => ((r = await get(k, client, `http://${server.ip}:8080/`)).code === 0 ? true : undefined),
				1000,
			);
			assert.match(r.out, new RegExp(`status=200 .*client=${client.ip.replace(/\./g, '\\.')}$`, 'm'), r.out);
			await waitFor('node 1 ztunnel counted it', 20_000, async () => ((await mtlsOpened(k, n1, id('mesh-a'), id('mesh-b'))) > before ? true : undefined), 500);
			const out = parseMetric(await metrics(k, n0), 'istio_tcp_connections_opened_total').filter(
				(s) => s.labels.reporter === 'source' && s.labels.destination_principal === id('mesh-b'),
			);
			assert.ok(out.length > 0, "node 0's ztunnel reports it as the source");
		});

		await t.test('weir observe shows the connection with both SPIFFE IDs, mTLS and its bytes', async () => {
			let lines: string[] = [];
			await waitFor(
				'a mesh flow from mesh-a to mesh-b through the relay',
				60_000,
				async () => {
					const r = await weirCli([
						'observe',
						'--kubeconfig',
						k.kubeconfig,
						'--from-namespace',
						'mesh-a',
						'--to-namespace',
						'mesh-b',
						'-o',
						'json',
						'--last',
						'200',
					]);
					lines = r.out.split('\n').filter((l) => l.startsWith('{'));
					return lines.some((l) => l.includes('"mesh"')) ? true : undefined;
				},
				2000,
			);
			const flows = lines.map(
				(l) =>
					JSON.parse(l) as {
						verdict: string;
						mesh?: { event: string; reporter: string; security: string; sourceIdentity?: string; destinationIdentity?: string; bytesSent?: number };
					},
			);
			const closed = flows.filter((f) => f.mesh?.event === 'close' && f.mesh.reporter === 'destination');
			assert.ok(closed.length > 0, `a closed connection reported by node 1's ztunnel: ${lines.slice(0, 3).join('\n')}`);
			const f = closed[0]!;
			assert.equal(f.verdict, 'FORWARDED');
			assert.equal(f.mesh!.security, 'mutual_tls');
			assert.equal(f.mesh!.sourceIdentity, id('mesh-a'));
			assert.equal(f.mesh!.destinationIdentity, id('mesh-b'));
			assert.ok((f.mesh!.bytesSent ?? 0) > 0, 'bytes from the client');
			const compact = await weirCli(['observe', '--kubeconfig', k.kubeconfig, '--from-namespace', 'mesh-a', '--to-namespace', 'mesh-b', '--last', '50']);
			assert.match(compact.out, new RegExp(`mTLS ${id('mesh-a').replace(/\//g, '\\/')} → ${id('mesh-b').replace(/\//g, '\\/')}`), compact.out);
		});

		await t.test('by Service name: the backend is meshed, so the connection is too', async () => {
			const before = await mtlsOpened(k, n1, id('mesh-a'), id('mesh-b'));
			const r = await get(k, client, `http://server.mesh-b.svc.cluster.local:8080/`);
			assert.equal(r.code, 0, r.out);
			assert.match(r.out, new RegExp(`client=${client.ip.replace(/\./g, '\\.')}`));
			await waitFor('counted', 20_000, async () => ((await mtlsOpened(k, n1, id('mesh-a'), id('mesh-b'))) > before ? true : undefined), 500);
		});

		await t.test('two meshed pods on one node: the local path, authenticated too', async () => {
			const before = await mtlsOpened(k, n0, id('mesh-a'), id('mesh-b'));
			const r = await get(k, client, `http://${near.ip}:8080/`);
			assert.equal(r.code, 0, r.out);
			assert.match(r.out, new RegExp(`client=${client.ip.replace(/\./g, '\\.')}`));
			await waitFor('counted on node 0', 20_000, async () => ((await mtlsOpened(k, n0, id('mesh-a'), id('mesh-b'))) > before ? true : undefined), 500);
		});

		await t.test('meshed → non-meshed and opted-out → meshed go direct, untouched by the ztunnel', async () => {
			const all = async (): Promise<number> =>
				parseMetric(await metrics(k, n1), 'istio_tcp_connections_opened_total')
					.filter((s) => s.labels.reporter === 'destination')
					.reduce((n, s) => n + s.value, 0);
			const before = await all();
			const r1 = await get(k, client, `http://${plain.ip}:8080/`);
			assert.equal(r1.code, 0, r1.out);
			assert.match(r1.out, new RegExp(`client=${client.ip.replace(/\./g, '\\.')}`));
			const r2 = await get(k, legacy, `http://${server.ip}:8080/`);
			assert.equal(r2.code, 0, r2.out);
			assert.match(r2.out, new RegExp(`client=${legacy.ip.replace(/\./g, '\\.')}`));
			await new Promise((r) => setTimeout(r, 1500));
			assert.equal(await all(), before, "node 1's ztunnel saw neither");
		});

		await t.test('between the nodes only TLS: a marker sent through the mesh never appears in clear on port 15008', async () => {
			const node0 = k.nodes[0]!;
			// Every interface of node 0, HBONE's port and the non-meshed pod only: the pod → ztunnel
			// leg inside the node is plaintext by design (it never leaves the node), so it is filtered out.
			const capture = async (send: () => Promise<unknown>): Promise<{ raw: Buffer; hbone: number }> => {
				const file = join(mkdtempSync(join(tmpdir(), 'weir-zt-pcap-')), 'link.pcap');
				const dump = spawn(
					'nsenter',
					[
						'--target',
						String(node0.holderPid),
						'--net',
						'tcpdump',
						'--immediate-mode',
						'-Z',
						'root',
						'-i',
						'any',
						'-U',
						'-s',
						'0',
						'-w',
						file,
						`tcp port 15008 or host ${plain.ip}`,
					],
					{
						stdio: ['ignore', 'ignore', 'pipe'],
					},
				);
				let err = '';
				dump.stderr.on('data', (d: Buffer) => (err += d.toString()));
				await waitFor('tcpdump listening', 10_000, async () => (err.includes('listening on') ? true : undefined), 100);
				try {
					await send();
					// the kernel hands packets over in blocks: give the last one time to arrive
					await new Promise((r) => setTimeout(r, 1500));
				} finally {
					dump.kill('SIGINT');
					await new Promise((r) => dump.once('exit', r));
				}
				const all = (await run('tcpdump', ['-n', '-r', file])).split('\n').filter(Boolean);
				const hbone = all.filter((l) => /\.15008: /.test(l)).length;
				if (!hbone) t.diagnostic(`capture: ${all.length} packets; ${all.slice(0, 8).join(' | ')}; tcpdump: ${err.trim().split('\n').join(' / ')}`);
				const raw = readFileSync(file);
				rmSync(dirname(file), { recursive: true, force: true });
				return { raw, hbone };
			};
			const marker = `weir-marker-${Date.now()}`;
			const meshed = await capture(async () => {
				const r = await inPod(k, 'mesh-a', client.pod, `echo ${marker} | nc -w 2 ${server.ip} 9000`);
				assert.match(r.out, new RegExp(marker), 'the echo came back through the mesh');
			});
			assert.ok(meshed.hbone > 0, 'packets to 15008 crossed the link');
			assert.ok(!meshed.raw.includes(Buffer.from(marker)), 'the marker never crossed the link in clear');
			// The same capture sees a marker sent to the pod outside the mesh: the check can fail.
			const clear = await capture(() => inPod(k, 'mesh-a', client.pod, `echo ${marker}-plain | nc -w 2 ${plain.ip} 9000`));
			assert.ok(clear.raw.includes(Buffer.from(`${marker}-plain`)), 'plaintext to a non-meshed pod is visible on the link');
		});

		await t.test('AuthorizationPolicy: one ServiceAccount allowed, another denied at the destination', async () => {
			const refused403 = async (): Promise<number> =>
				parseMetric(await metrics(k, n1), 'weir_ztunnel_refused_connections_total')
					.filter((x) => x.labels.direction === 'inbound' && x.labels.code === '403')
					.reduce((n, x) => n + x.value, 0);
			const policy = {
				apiVersion: 'security.istio.io/v1',
				kind: 'AuthorizationPolicy',
				metadata: { name: 'server-from-mesh-a', namespace: 'mesh-b' },
				spec: {
					selector: { matchLabels: { app: 'server' } },
					action: 'ALLOW',
					rules: [{ from: [{ source: { principals: ['cluster.local/ns/mesh-a/sa/default'] } }] }],
				},
			};
			// mesh-c's client is meshed too: it reaches the server before the policy.
			await waitFor('mesh-c reaches the server', 60_000, async () => ((await get(k, other, `http://${server.ip}:8080/`)).code === 0 ? true : undefined), 1000);
			const before = await refused403();
			await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(policy) });
			t.after(() => k.kubectl(['-n', 'mesh-b', 'delete', 'authorizationpolicy', 'server-from-mesh-a', '--ignore-not-found']));
			await waitFor(
				'mesh-c denied',
				20_000,
				async () => ((await inPod(k, 'mesh-c', other.pod, `timeout 8 wget -q -O - http://${server.ip}:8080/ 2>&1`)).code !== 0 ? true : undefined),
				500,
			);
			assert.ok((await refused403()) > before, 'node 1 counted a 403');
			const allowed = await get(k, client, `http://${server.ip}:8080/`);
			assert.equal(allowed.code, 0, allowed.out);
			const logs = (await k.kubectl(['-n', WEIR_NS, 'logs', await ztunnelPod(k, n1)])).stdout;
			assert.match(logs, /"status":403.*"source":"spiffe:\/\/cluster.local\/ns\/mesh-c\/sa\/default"/, 'the refusal is logged with the identity');
			const denied = await weirCli(['observe', '--kubeconfig', k.kubeconfig, '--from-namespace', 'mesh-c', '--verdict', 'DROPPED', '--last', '50']);
			assert.match(denied.out, /AUTHZ_DENIED.*AuthorizationPolicy mesh-b\/server-from-mesh-a/, denied.out);
			await k.kubectl(['-n', 'mesh-b', 'delete', 'authorizationpolicy', 'server-from-mesh-a']);
			await waitFor('mesh-c allowed again', 20_000, async () => ((await get(k, other, `http://${server.ip}:8080/`)).code === 0 ? true : undefined), 500);
		});

		await t.test('PeerAuthentication STRICT: a plaintext client is refused, the meshed one gets in; PERMISSIVE again lets it in', async () => {
			const strict = {
				apiVersion: 'security.istio.io/v1',
				kind: 'PeerAuthentication',
				metadata: { name: 'mesh-b-strict', namespace: 'mesh-b' },
				spec: { mtls: { mode: 'STRICT' } },
			};
			await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(strict) });
			t.after(() => k.kubectl(['-n', 'mesh-b', 'delete', 'peerauthentication', 'mesh-b-strict', '--ignore-not-found']));
			const plainGet = (): Promise<{ code: number; out: string }> => inPod(k, 'mesh-a', legacy.pod, `timeout 3 wget -q -O - http://${server.ip}:8080/ 2>&1`);
			await waitFor('the opted-out client refused', 30_000, async () => ((await plainGet()).code !== 0 ? true : undefined), 1000);
			const meshed = await get(k, client, `http://${server.ip}:8080/`);
			assert.equal(meshed.code, 0, meshed.out);
			assert.match(meshed.out, new RegExp(`client=${client.ip.replace(/\./g, '\\.')}`), 'delivered by the ztunnel with the client address');
			const drops = await weirCli([
				'observe',
				'--kubeconfig',
				k.kubeconfig,
				'--to-namespace',
				'mesh-b',
				'--verdict',
				'DROPPED',
				'--drop-reason',
				'MTLS_REQUIRED',
				'--last',
				'20',
			]);
			assert.match(drops.out, /MTLS_REQUIRED.*PeerAuthentication mesh-b\/mesh-b-strict/, drops.out);
			await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ ...strict, spec: { mtls: { mode: 'PERMISSIVE' } } }) });
			await waitFor('the opted-out client admitted again', 30_000, async () => ((await plainGet()).code === 0 ? true : undefined), 1000);
		});

		await t.test('the ztunnel killed under traffic: meshed connections fail closed, then recover; others unaffected', async () => {
			const loop = (ip: string, file: string): string =>
				`(for i in $(seq 1 50); do if timeout 1 wget -q -O /dev/null http://${ip}:8080/; then echo ok; else echo fail; fi; sleep 0.2; done) > ${file} 2>&1 &`;
			await inPod(k, 'mesh-a', client.pod, loop(server.ip, '/tmp/meshed.loop'));
			await inPod(k, 'mesh-a', client.pod, loop(plain.ip, '/tmp/plain.loop'));
			await new Promise((r) => setTimeout(r, 1500));
			await k.kubectl(['-n', WEIR_NS, 'delete', 'pod', await ztunnelPod(k, n0), '--wait=false']);
			await waitFor(
				'both loops done',
				120_000,
				async () => {
					const a = (await inPod(k, 'mesh-a', client.pod, 'cat /tmp/meshed.loop /tmp/plain.loop')).out.split('\n').filter((l) => l === 'ok' || l === 'fail');
					return a.length >= 100 ? true : undefined;
				},
				2000,
			);
			const meshed = (await inPod(k, 'mesh-a', client.pod, 'cat /tmp/meshed.loop')).out.split('\n');
			const plainRuns = (await inPod(k, 'mesh-a', client.pod, 'cat /tmp/plain.loop')).out.split('\n');
			const firstFail = meshed.indexOf('fail');
			assert.ok(firstFail > 0, `meshed connections worked, then failed while the ztunnel was gone: ${meshed.join(' ')}`);
			assert.equal(meshed.at(-1), 'ok', `and recovered: ${meshed.join(' ')}`);
			assert.ok(!plainRuns.includes('fail'), `the non-meshed destination never failed: ${plainRuns.join(' ')}`);
			await k.kubectl(['-n', WEIR_NS, 'rollout', 'status', 'daemonset/weir-ztunnel', '--timeout=120s'], { timeoutMs: 130_000 });
		});

		await t.test('rollout restart, then certificates of 20 s rotating under a live stream', async () => {
			await k.kubectl([
				'-n',
				WEIR_NS,
				'patch',
				'deployment',
				'weir-controller',
				'--type=json',
				'-p',
				JSON.stringify([{ op: 'add', path: '/spec/template/spec/containers/0/args/-', value: '--cert-ttl-seconds=20' }]),
			]);
			await k.kubectl(['-n', WEIR_NS, 'rollout', 'status', 'deployment/weir-controller', '--timeout=180s'], { timeoutMs: 190_000 });
			await k.kubectl(['-n', WEIR_NS, 'rollout', 'restart', 'daemonset/weir-ztunnel']);
			await k.kubectl(['-n', WEIR_NS, 'rollout', 'status', 'daemonset/weir-ztunnel', '--timeout=180s'], { timeoutMs: 190_000 });
			let first = { code: -1, out: '' };
			await waitFor(
				'meshed again after the rollout',
				60_000,
				async () => ((first = await get(k, client, `http://${server.ip}:8080/`)).code === 0 ? true : undefined),
				1000,
			);
			assert.match(first.out, new RegExp(`client=${client.ip.replace(/\./g, '\\.')}`));
			// 35 s of a held stream: each certificate lives 20 s and is renewed at 10 s.
			await inPod(k, 'mesh-a', client.pod, `(for i in $(seq 1 70); do echo tick-$i; sleep 0.5; done) | nc ${server.ip} 9000 > /tmp/rot.out 2>&1 &`);
			await waitFor(
				'the held stream echoed to its end',
				60_000,
				async () => ((await inPod(k, 'mesh-a', client.pod, 'cat /tmp/rot.out')).out.includes('tick-70') ? true : undefined),
				1000,
			);
			const logs = (await k.kubectl(['-n', WEIR_NS, 'logs', await ztunnelPod(k, n0)])).stdout.split('\n');
			const issued = logs.filter((l) => l.includes('workload certificate issued') && l.includes(id('mesh-a')));
			assert.ok(issued.length >= 3, `mesh-a's certificate was renewed under the stream (${issued.length} issued)`);
			const after = await get(k, client, `http://${server.ip}:8080/`);
			assert.equal(after.code, 0, after.out);
		});

		await t.test('removing the namespace label: new connections go direct, an open one keeps working', async () => {
			// An open connection through the mesh: the TCP echo on 9000, held by a shell loop.
			await inPod(k, 'mesh-a', client.pod, `(for i in $(seq 1 40); do echo ping-$i; sleep 0.5; done) | nc ${server.ip} 9000 > /tmp/held.out 2>&1 &`);
			await new Promise((r) => setTimeout(r, 2000));
			await k.kubectl(['label', 'namespace', 'mesh-b', 'weir.io/mesh-']);
			const before = await mtlsOpened(k, n1, id('mesh-a'), id('mesh-b'));
			await new Promise((r) => setTimeout(r, 3000));
			const r = await get(k, client, `http://${server.ip}:8080/`);
			assert.equal(r.code, 0, r.out);
			assert.match(r.out, new RegExp(`client=${client.ip.replace(/\./g, '\\.')}`));
			assert.equal(await mtlsOpened(k, n1, id('mesh-a'), id('mesh-b')), before, 'not through the mesh any more');
			await waitFor(
				'the held connection echoed to its end',
				40_000,
				async () => ((await inPod(k, 'mesh-a', client.pod, 'cat /tmp/held.out')).out.includes('ping-40') ? true : undefined),
				1000,
			);
		});

		await t.test('the ztunnels logged no error and did not restart', async () => {
			const rs = await k.kubectl([
				'-n',
				WEIR_NS,
				'get',
				'pods',
				'-l',
				'app.kubernetes.io/name=weir-ztunnel',
				'-o',
				'jsonpath={.items[*].status.containerStatuses[0].restartCount}',
			]);
			assert.deepEqual(rs.stdout.trim().split(/\s+/).map(Number), [0, 0]);
			for (const n of [n0, n1]) {
				const logs = await k.kubectl(['-n', WEIR_NS, 'logs', await ztunnelPod(k, n)]);
				const errors = logs.stdout.split('\n').filter((l) => /"level":(50|60)/.test(l));
				assert.deepEqual(errors, [], `ztunnel on ${n}`);
			}
		});
	});
});
