// The install surface without a cluster: the agent's /v1/status (in-process with
// inject), `weir status` formatting and exit status, node setup and uninstall on
// temporary directories, and the deploy/ manifests' invariants.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { parseAllDocuments } from 'yaml';
import { agentStatus, readiness, statusApi, type StatusSources } from '../../src/agent/status.js';
import { formatStatus, healthy, runStatus, type StatusReport } from '../../src/cli/status.js';
import { INSTALLED_RECORD, initNode, uninstallNode, type NodePaths } from '../../src/host-setup/setup.js';
import { buildCli } from '../../src/cli/program.js';
import { repoRoot } from '../../src/shared/package.js';

function sources(over: Partial<StatusSources> = {}): StatusSources {
	return {
		node: 'n2',
		version: '0.1.0',
		startedAt: new Date('2026-01-01T00:00:00Z'),
		pinRoot: tmpdir(),
		datapath: {
			pinnedAttachments: () => [7, 9],
			ipcacheEntries: () => [1, 2, 3],
			endpointEntries: () => [1, 2],
			policyEntryCount: () => 4,
		},
		watches: { isSynced: true, policies: { list: () => [{}, {}] } },
		controller: {
			runs: 3,
			lastError: undefined,
			lastApplied: new Date('2026-01-01T00:00:05Z'),
			compiled: {
				endpoints: new Map([
					['10.244.1.5', { isolatedBy: { ingress: ['d-redis/redis-allow-c-app'], egress: [] } }],
					['10.244.1.6', { isolatedBy: { ingress: [], egress: [] }, mesh: { meshed: true } }],
				]),
				problems: [],
			},
		},
		endpoints: { list: () => [{}, {}] },
		mesh: { active: true, routing: 'installed', lastError: undefined },
		...over,
	};
}

test('status: ready agent with a loaded datapath names the policies it enforces', () => {
	const s = agentStatus(sources());
	assert.equal(s.ready, true);
	assert.equal(s.datapath.loaded, true);
	assert.equal(s.datapath.attachments, 2);
	assert.equal(s.datapath.policyEntries, 4);
	assert.deepEqual(s.endpoints, { local: 2, isolated: 1, meshed: 1 });
	assert.deepEqual(s.mesh, { enabled: true, captureRouting: 'installed' });
	assert.deepEqual(s.policy.enforcedHere, ['d-redis/redis-allow-c-app']);
	assert.equal(s.policy.networkPolicies, 2);
	assert.equal(s.lastError, null);
});

test('status: a failing map read is the last error and the datapath is not loaded; never throws', () => {
	const s = agentStatus(
		sources({
			datapath: {
				pinnedAttachments: () => [],
				ipcacheEntries: () => {
					throw new Error('EBADF');
				},
				endpointEntries: () => [],
				policyEntryCount: () => 0,
			},
			controller: { runs: 0, lastError: undefined, lastApplied: undefined, compiled: undefined },
		}),
	);
	assert.equal(s.ready, false);
	assert.equal(s.datapath.loaded, false);
	assert.match(s.lastError ?? '', /ipcache map: EBADF/);
});

test('status and /readyz: a dead datapath event stream is the last error and the agent is not ready', async () => {
	const stopped = 'datapath events stopped (weir_events): epoll_wait(weir_events): Bad file descriptor (EBADF)';
	assert.deepEqual(readiness(sources()), { ready: true, synced: true, lastError: null });
	const dead = sources({ events: { lastError: stopped } });
	assert.deepEqual(readiness(dead), { ready: false, synced: true, lastError: stopped });
	const s = agentStatus(dead);
	assert.equal(s.ready, false);
	assert.equal(s.lastError, stopped);
	// Neither hides the other.
	const both = sources({ events: { lastError: stopped }, controller: { ...sources().controller, lastError: 'policy apply failed' } });
	assert.equal(agentStatus(both).lastError, `${stopped}; policy apply failed`);
	assert.equal(readiness(both).lastError, `${stopped}; policy apply failed`);
	// A stream that is still up changes nothing.
	assert.equal(agentStatus(sources({ events: { lastError: undefined } })).ready, true);

	const app = Fastify();
	await app.register(statusApi, { sources: dead });
	const res = await app.inject({ method: 'GET', url: '/v1/status' });
	assert.equal((res.json() as { lastError: string }).lastError, stopped);
	await app.close();
});

test('status: the mesh on this node, and its errors', () => {
	const failed = agentStatus(sources({ mesh: { active: false, routing: 'failed', lastError: 'capture routing: Operation not permitted' } }));
	assert.deepEqual(failed.mesh, { enabled: false, captureRouting: 'failed' });
	assert.equal(failed.lastError, 'mesh: capture routing: Operation not permitted');
	// An agent built without a mesh part reports it off.
	const { mesh: _, ...none } = sources();
	assert.deepEqual(agentStatus(none).mesh, { enabled: false, captureRouting: 'unknown' });
});

test('GET /v1/status through the fastify plugin', async () => {
	const app = Fastify();
	await app.register(statusApi, { sources: sources() });
	const res = await app.inject({ method: 'GET', url: '/v1/status' });
	assert.equal(res.statusCode, 200);
	const body = res.json() as { node: string; schema: number; ready: boolean };
	assert.equal(body.node, 'n2');
	assert.equal(body.schema, 1);
	assert.equal(body.ready, true);
	await app.close();
});

test('weir status: a table per node, exit status follows health', async () => {
	const good = agentStatus(sources());
	const report: StatusReport = {
		daemonSet: { desired: 2, ready: 1, updated: 2, available: 1, image: 'weir.local/weir-agent:0.1.0' },
		nodes: [
			{ node: 'n1', pod: 'weir-agent-abc', podPhase: 'Running', podReady: false, restarts: 2, unreachable: 'agent API not answering (503)' },
			{ node: 'n2', pod: 'weir-agent-def', podPhase: 'Running', podReady: true, restarts: 0, status: good },
		],
	};
	const lines = formatStatus(report);
	assert.match(lines[0]!, /1\/2 ready/);
	assert.ok(
		lines.some((l) => /^n1\s+weir-agent-abc Running not-ready .*agent API not answering/.test(l)),
		lines.join('\n'),
	);
	assert.ok(
		lines.some((l) => /^n2\s+ready v0\.1\.0\s+loaded, 2 veths\s+2 \(1 isolated, 1 meshed\)\s+1 enforced \/ 2\s+-/.test(l)),
		lines.join('\n'),
	);
	assert.equal(healthy(report), false);
	assert.equal(healthy({ nodes: [report.nodes[1]!] }), true);
	const out: string[] = [];
	assert.equal(await runStatus({ collect: async () => ({ nodes: [report.nodes[1]!] }) }, 'json', (s) => out.push(s)), true);
	assert.equal((JSON.parse(out.join('\n')) as StatusReport).nodes[0]!.status!.node, 'n2');
});

test('weir status is registered on the CLI', () => {
	const cli = buildCli(() => {});
	assert.ok(cli.commands.some((c) => c.name() === 'status'));
});

function nodeDirs(): { root: string; p: NodePaths } {
	const root = mkdtempSync(join(tmpdir(), 'weir-node-'));
	const src = join(root, 'image');
	mkdirSync(join(src, 'plugins'), { recursive: true });
	writeFileSync(join(src, 'weir-cni'), '#!/bin/sh\n');
	for (const p of ['host-local', 'loopback', 'portmap']) writeFileSync(join(src, 'plugins', p), `image ${p}\n`);
	const p: NodePaths = {
		cniBinDir: join(root, 'opt/cni/bin'),
		cniConfDir: join(root, 'etc/cni/net.d'),
		bpffsRoot: join(root, 'bpffs'),
		pinRoot: join(root, 'bpffs/weir'),
		runDir: join(root, 'run/weir'),
		weirCniSource: join(src, 'weir-cni'),
		pluginSourceDir: join(src, 'plugins'),
	};
	return { root, p };
}

test('node setup: installs weir-cni and only the chained plugins the node lacks; uninstall removes only those, and the capture routing', async () => {
	const { root, p } = nodeDirs();
	try {
		mkdirSync(p.cniBinDir, { recursive: true });
		mkdirSync(p.cniConfDir, { recursive: true });
		writeFileSync(join(p.cniBinDir, 'loopback'), 'node loopback\n');
		writeFileSync(join(p.cniBinDir, 'ptp'), 'node ptp\n');
		writeFileSync(join(p.cniConfDir, '10-kindnet.conflist'), '{}');
		let mounted = '';
		const rep = initNode(p, (r) => {
			mounted = r;
			mkdirSync(r, { recursive: true });
		});
		assert.equal(mounted, p.bpffsRoot, 'bpffs is mounted when missing');
		assert.equal(readFileSync(join(p.cniBinDir, 'loopback'), 'utf8'), 'node loopback\n', "the node's own plugin is never overwritten");
		assert.equal(readFileSync(join(p.cniBinDir, 'host-local'), 'utf8'), 'image host-local\n');
		assert.deepEqual(JSON.parse(readFileSync(join(p.cniBinDir, INSTALLED_RECORD), 'utf8')), ['host-local', 'portmap', 'weir-cni']);
		assert.ok(rep.actions.some((a) => a.includes('weir-cni')));
		assert.ok(existsSync(p.runDir));
		// A second init (agent upgrade) keeps the record and replaces weir-cni.
		initNode(p, () => {});
		assert.deepEqual(JSON.parse(readFileSync(join(p.cniBinDir, INSTALLED_RECORD), 'utf8')), ['host-local', 'portmap', 'weir-cni']);

		// What the agent adds at run time.
		writeFileSync(join(p.cniConfDir, '05-weir.conflist'), '{}');
		mkdirSync(join(p.pinRoot, 'links'), { recursive: true });
		writeFileSync(join(p.pinRoot, 'links', '12-ingress'), '');
		writeFileSync(join(p.pinRoot, 'links', '12-egress'), '');
		writeFileSync(join(p.pinRoot, 'weir_policy'), '');
		// The socket load balancer's cgroup links, one directory per cgroup.
		const cg = join(p.pinRoot, 'cgroup-links', encodeURIComponent('/sys/fs/cgroup/unified'));
		mkdirSync(cg, { recursive: true });
		for (const hook of ['getpeername4', 'recvmsg4', 'connect4', 'sendmsg4']) writeFileSync(join(cg, hook), '');
		writeFileSync(join(p.runDir, 'cni.sock'), '');

		const detached: string[] = [];
		let routing = true; // the agent installed the capture's rule and table
		const un = await uninstallNode(p, {
			detach: (path) => void detached.push(path),
			removeCaptureRouting: async () => {
				assert.ok(!existsSync(join(p.pinRoot, 'links')), 'the pod programs that mark packets for it are detached first');
				const was = routing;
				routing = false;
				return was;
			},
		});
		assert.deepEqual(
			detached.map((d) => d.slice(p.pinRoot.length)),
			[
				'/links/12-egress',
				'/links/12-ingress',
				// translating hooks first, then the reverse ones
				...['connect4', 'sendmsg4', 'recvmsg4', 'getpeername4'].map((h) => `/cgroup-links/%2Fsys%2Ffs%2Fcgroup%2Funified/${h}`),
			],
		);
		assert.ok(!existsSync(p.pinRoot));
		assert.ok(!existsSync(p.runDir));
		assert.deepEqual(readdirSync(p.cniConfDir), ['10-kindnet.conflist'], 'other CNI configs stay');
		assert.deepEqual(readdirSync(p.cniBinDir).sort(), ['loopback', 'ptp'], "the node's own plugins stay");
		assert.ok(un.warnings.length === 0, un.warnings.join('; '));
		assert.equal(routing, false);
		assert.ok(un.actions.includes('removed the capture routing (rule pref 90 fwmark 0xe00/0xf00, table 2050)'), un.actions.join('\n'));
		// Idempotent.
		const again = await uninstallNode(p, { detach: () => assert.fail('nothing left to detach'), removeCaptureRouting: async () => false });
		assert.equal(again.actions.length, 0);
		// A routing that cannot be removed is a warning; the rest is still done.
		const failed = await uninstallNode(p, {
			detach: () => undefined,
			removeCaptureRouting: () => Promise.reject(new Error('EPERM')),
		});
		assert.deepEqual(failed.warnings, ['the capture routing could not be removed: EPERM']);
	} finally {
		rmSync(root, { recursive: true, force: true });
	}
});

// Manifests are free-form: read them as plain objects.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- free-form YAML, asserted field by field
type Manifest = Record<string, any>;

/** Every document of every YAML file under deploy/, parsed; a syntax error or warning fails. */
function deployManifests(): Map<string, Manifest[]> {
	const out = new Map<string, Manifest[]>();
	const walk = (dir: string): void => {
		for (const e of readdirSync(join(repoRoot, dir), { withFileTypes: true })) {
			const rel = join(dir, e.name);
			if (e.isDirectory()) walk(rel);
			else if (/\.ya?ml$/.test(e.name)) {
				const docs = parseAllDocuments(readFileSync(join(repoRoot, rel), 'utf8'));
				out.set(
					rel,
					docs.map((d, i) => {
						assert.deepEqual(
							[...d.errors, ...d.warnings].map((x) => x.message),
							[],
							`${rel} document ${i}`,
						);
						return d.toJS() as Manifest;
					}),
				);
			}
		}
	};
	walk('deploy');
	return out;
}

/** The one object of `kind` (and `name`) in a file. */
function only(docs: Manifest[] | undefined, kind: string, name?: string): Manifest {
	const hits = (docs ?? []).filter((d) => d['kind'] === kind && (name === undefined || d['metadata']?.['name'] === name));
	assert.equal(hits.length, 1, `one ${kind}${name ? ` ${name}` : ''}`);
	return hits[0]!;
}

function strings(v: unknown): string[] {
	if (typeof v === 'string') return [v];
	if (Array.isArray(v)) return v.flatMap(strings);
	if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => [k, ...strings(x)]);
	return [];
}

test('deploy/: every manifest parses; least-privilege RBAC, tolerations everywhere, probes on the configured port', () => {
	const files = deployManifests();
	for (const [file, docs] of files) {
		assert.ok(docs.length > 0, `${file} has a document`);
		for (const d of docs) assert.ok(typeof d['apiVersion'] === 'string' && typeof d['kind'] === 'string', `${file}: every document has apiVersion and kind`);
	}
	for (const k of [
		'deploy/kustomization.yaml',
		'deploy/base/kustomization.yaml',
		'deploy/no-kube-proxy/kustomization.yaml',
		'deploy/uninstall/kustomization.yaml',
	]) {
		for (const r of only(files.get(k), 'Kustomization')['resources'] as string[]) {
			const at = join(k, '..', r);
			assert.ok(files.has(at) || files.has(join(at, 'kustomization.yaml')), `${k}: resource ${r} exists`);
		}
	}

	const rbac = files.get('deploy/base/rbac.yaml');
	const rules = only(rbac, 'ClusterRole', 'weir-agent')['rules'] as Array<{ verbs: string[] }>;
	const verbs = rules.map((r) => r.verbs.join(', '));
	assert.ok(rules.length >= 3 && verbs.every((v) => v === 'get, list, watch'), `the agent only reads: ${verbs.join(' | ')}`);
	assert.ok(!strings(rbac).some((x) => x.includes('*')), 'no wildcards');
	const istio = (rules as Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>).find((r) => r.apiGroups.includes('security.istio.io'));
	assert.deepEqual(
		istio && [istio.resources, istio.verbs],
		[['peerauthentications'], ['get', 'list', 'watch']],
		'the agent reads PeerAuthentications (STRICT), nothing else of Istio',
	);

	const pod = only(files.get('deploy/base/daemonset.yaml'), 'DaemonSet', 'weir-agent')['spec']['template']['spec'];
	assert.ok(
		(pod['tolerations'] as Manifest[]).some((t) => t['operator'] === 'Exists' && t['key'] === undefined && t['effect'] === undefined),
		'tolerates every taint',
	);
	assert.equal(pod['hostNetwork'], true);
	const hostPaths = (pod['volumes'] as Manifest[]).map((v) => v['hostPath']?.['path']);
	for (const m of ['/sys/fs/bpf', '/sys/fs/cgroup', '/opt/cni/bin', '/etc/cni/net.d', '/var/run/netns', '/var/run/weir']) assert.ok(hostPaths.includes(m), m);

	const data = only(files.get('deploy/base/configmap.yaml'), 'ConfigMap', 'weir-config')['data'] as Record<string, unknown>;
	for (const [k, v] of Object.entries(data)) assert.equal(typeof v, 'string', `ConfigMap value ${k} is a string`);
	const port = data['observer-port'];
	assert.equal(port, '9962');
	const agent = (pod['containers'] as Manifest[]).find((c) => c['name'] === 'agent')!;
	assert.deepEqual(
		[agent['readinessProbe']['httpGet']['port'], agent['livenessProbe']['httpGet']['port']],
		[Number(port), Number(port)],
		'readiness and liveness probe the observer port',
	);
	const docs = readFileSync(join(repoRoot, 'docs', 'configuration.md'), 'utf8');
	for (const key of Object.keys(data)) assert.ok(docs.includes(`\`${key}\``), `docs/configuration.md documents ${key}`);
});
