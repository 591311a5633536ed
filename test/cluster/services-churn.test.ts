// Bad input for Weir's socket load balancer, on the local cluster with no kube-proxy and
// Weir installed from deploy/:
// 1. a Service whose EndpointSlices (ours: the Service has no selector) change every
//    second for half a minute — endpoints added, removed, ready, unready, terminating,
//    a second slice coming and going, backend pods force-deleted — while a client pod
//    connects to its ClusterIP in a loop: each connect reaches a backend that was ready
//    about then, or is refused at once when none was, and only a pod just deleted may
//    leave a connect hanging, until the agent's reconcile. Afterwards every node's
//    weir_lb4_services holds exactly the ready backends, and nothing leaked;
// 2. a backend deleted under a long-lived TCP connection: the connection ends, the client
//    reconnects at once to another backend, the map forgets the deleted one;
// 3. a Service deleted and recreated with the same ClusterIP and other backends: the
//    ClusterIP reaches only the new ones, the old service id is gone from the map.
// The agents never restart and log no error.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startCluster, clusterStatus, type Cluster } from '../../hack/cluster/cluster.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { sleep, waitFor } from '../../hack/cluster/exec.js';
import { workloadDeployment, workloadService, type Workload } from '../../hack/demo/scenario.js';
import { COALESCE_DELAY_MS } from '../../src/shared/coalesce.js';
import {
	agentTrouble,
	assertNoKubeProxy,
	getByName,
	inPod,
	installWeir,
	lbFrontend,
	lbMapEntries,
	lbMapProblems,
	podOf,
	readyPods,
	waitLbFrontend,
	waitPods,
	type PodInfo,
} from '../helpers/services-cluster.js';

const NAME = 'wchurn';
const NS = 'churn';

/**
 * The agent's reconcile: every Service or EndpointSlice event of the agent's watches
 * schedules the service controller (src/services/controller.ts) through its Coalescer
 * (src/shared/coalesce.ts), which runs once COALESCE_DELAY_MS after the first event of
 * a burst; the run compiles the whole watch cache and writes the difference to the
 * maps. There is no periodic resync and no other queue. So an API write is in every
 * node's map one watch delivery + COALESCE_DELAY_MS + one run after it is accepted:
 * milliseconds. The margin (watch delivery and the run on a busy 2-core machine, and
 * our own reading of the map) is 2 s. A watch that fails meanwhile adds its restart
 * backoff (at most 4 s, src/cluster/informers.ts), which is a fault this test would
 * rightly report.
 */
const RECONCILE_MS = COALESCE_DELAY_MS + 2_000;
const RECONCILE_S = RECONCILE_MS / 1000;
/** what "refused at once" allows a connect, wget's start and exit included */
const REFUSED_AT_ONCE_S = 1;
/** the clocks of the test and of the pods (/proc/uptime, 10 ms steps) */
const CLOCK_SLACK_S = 0.02;
const CHURN_STEPS = 30;
const STEP_MS = 1000;
const POOL = 5;

const client: Workload = { namespace: NS, name: 'client' };
const pool: Workload = { namespace: NS, name: 'pool' };
const long: Workload = { namespace: NS, name: 'long' };
const oldW: Workload = { namespace: NS, name: 'old' };
const newW: Workload = { namespace: NS, name: 'new' };

/** Seconds since boot: the same clock in the test and in every pod (no time namespaces). */
function uptime(): number {
	return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
}

/** A small seeded generator (mulberry32): the churn is random but the same every run. */
function seeded(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

/**
 * Endpoint conditions as a controller writes them. Only the first two make a backend.
 * Terminating endpoints that still serve are never the only ones listed, so the test
 * does not depend on whether they are a fallback when nothing is ready (kube-proxy's
 * choice) or not (Weir's, docs/services.md).
 */
const CONDITIONS = {
	ready: { ready: true },
	nil: {}, // no `ready`: ready, as the API says
	unready: { ready: false },
	terminating: { ready: false, serving: false, terminating: true },
	servingTerminating: { ready: false, serving: true, terminating: true },
} as const;
type Cond = keyof typeof CONDITIONS;
const makesBackend = (c: Cond): boolean => c === 'ready' || c === 'nil';

interface Ep {
	pod: PodInfo;
	cond: Cond;
}

function churnSlice(name: string, eps: readonly Ep[]): object {
	return {
		apiVersion: 'discovery.k8s.io/v1',
		kind: 'EndpointSlice',
		metadata: {
			name,
			namespace: NS,
			labels: { 'kubernetes.io/service-name': 'churn', 'endpointslice.kubernetes.io/managed-by': 'services-churn.test.weir.local' },
		},
		addressType: 'IPv4',
		ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
		endpoints: eps.map((e) => ({ addresses: [e.pod.ip], nodeName: e.pod.node, conditions: CONDITIONS[e.cond] })),
	};
}

/** The Service of part 3: the ClusterIP given, or one allocated. */
function reService(app: string, clusterIP?: string): object {
	return {
		apiVersion: 'v1',
		kind: 'Service',
		metadata: { name: 're', namespace: NS },
		spec: { selector: { app }, ...(clusterIP ? { clusterIP } : {}), ports: [{ name: 'http', port: 8080, targetPort: 8080 }] },
	};
}

async function apply(k: Cluster, obj: object): Promise<void> {
	await k.kubectl(['apply', '-f', '-'], { input: JSON.stringify(obj) });
}

async function clusterIpOf(k: Cluster, svc: string): Promise<string> {
	return (await k.kubectl(['-n', NS, 'get', 'service', svc, '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
}

/** The ready endpoints (ip:port of the named port) of a Service's slices, as the API has them. */
async function apiReady(k: Cluster, svc: string, portName: string): Promise<string[]> {
	const r = await k.kubectl(['-n', NS, 'get', 'endpointslices', '-l', `kubernetes.io/service-name=${svc}`, '-o', 'json']);
	const out = new Set<string>();
	for (const s of (
		JSON.parse(r.stdout) as {
			items: Array<{ ports?: Array<{ name?: string; port: number }>; endpoints?: Array<{ addresses: string[]; conditions?: { ready?: boolean } }> }>;
		}
	).items) {
		const port = s.ports?.find((p) => (p.name ?? '') === portName)?.port;
		if (port === undefined) continue;
		for (const e of s.endpoints ?? []) if (e.conditions?.ready !== false) for (const a of e.addresses) out.add(`${a}:${port}`);
	}
	return [...out].sort();
}

/** `n` HTTP GETs to vip:port from the client pod, one line each: the answer or the error. */
async function connects(k: Cluster, pod: string, vip: string, port: number, n: number): Promise<string[]> {
	const r = await inPod(
		k,
		NS,
		pod,
		`i=0; while [ $i -lt ${n} ]; do out=$(timeout 3 wget -q -O - http://${vip}:${port}/ 2>&1); echo "rc=$? $(printf %s "$out" | tr '\\n' ' ')"; i=$((i+1)); done`,
		60_000,
	);
	assert.equal(r.code, 0, r.out);
	return r.out.split('\n');
}

describe('the socket load balancer under bad input, with no kube-proxy', { timeout: 1_200_000 }, () => {
	let c: Cluster | undefined;
	let pids: number[] = [];
	let clientPod = '';
	after(async () => {
		if (!c) return;
		const rep = await c.stop();
		assert.deepEqual(rep.left, [], 'the cluster left nothing behind');
		assert.deepEqual(await leftovers(NAME, pids), []);
	});

	function cluster(): Cluster {
		assert.ok(c, 'the cluster did not start');
		return c;
	}

	test('install Weir from deploy/ on a cluster without kube-proxy', async (t) => {
		assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
		c = await startCluster({ name: NAME, cni: 'none', kubeProxy: false, log: () => {} });
		pids = clusterStatus(NAME).processes.map((p) => p.pid);
		const k = c;
		await assertNoKubeProxy(k);
		await installWeir(k, (m) => t.diagnostic(m));
		const img = k.images.workload;
		await apply(k, {
			apiVersion: 'v1',
			kind: 'List',
			items: [
				{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
				workloadDeployment(img, { ...client, node: k.nodes[0]!.name }),
				workloadDeployment(img, pool, POOL),
				workloadDeployment(img, long, 2),
				workloadService(long),
				workloadDeployment(img, oldW, 2),
				workloadDeployment(img, newW, 2),
				// No selector: its EndpointSlices are the test's own.
				{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'churn', namespace: NS }, spec: { ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } },
			],
		});
		clientPod = (await podOf(k, NS, 'client')).pod;
		for (const [w, n] of [
			[pool, POOL],
			[long, 2],
			[oldW, 2],
			[newW, 2],
		] as const)
			await waitPods(k, NS, w.name, n);
	});

	test('EndpointSlices churning every second: each connect reaches a backend ready then or is refused at once; the map ends exact', async (t) => {
		const k = cluster();
		const vip = await clusterIpOf(k, 'churn');
		const rand = seeded(0x5eed);
		const seen = new Map<string, PodInfo>(); // pod name -> pod, every pool pod ever listed
		const initial = await readyPods(k, NS, 'pool');
		for (const p of initial) seen.set(p.pod, p);
		// One pod is listed all the time and never ready: nothing may ever reach it.
		const never = initial[0]!;
		const deleted = new Map<string, { pod: PodInfo; at: number; cleared?: number }>(); // by ip
		const transitions: Array<{ at: number; done: number; ready: Set<string> }> = [];
		const current = { a: [] as Ep[], b: undefined as Ep[] | undefined };
		const readyIps = (): Set<string> => new Set([...current.a, ...(current.b ?? [])].filter((e) => makesBackend(e.cond)).map((e) => e.pod.ip));
		/** One API write, recorded with the ready set it leaves (each write is a state the agent may show). */
		const write = async (fn: () => Promise<unknown>): Promise<void> => {
			const at = uptime();
			await fn();
			const done = uptime();
			const ready = readyIps();
			transitions.push({ at, done, ready });
			for (const d of deleted.values()) if (d.cleared === undefined && !ready.has(d.pod.ip)) d.cleared = done;
		};
		const setA = (eps: Ep[]): Promise<void> =>
			write(async () => {
				current.a = eps;
				await apply(k, churnSlice('churn-a', eps));
			});
		const setB = async (eps: Ep[] | undefined): Promise<void> => {
			if (!eps && !current.b) return;
			await write(async () => {
				current.b = eps;
				if (eps) await apply(k, churnSlice('churn-b', eps));
				else await k.kubectl(['-n', NS, 'delete', 'endpointslice', 'churn-b', '--ignore-not-found', '--wait=false']);
			});
		};

		// A known start: two backends, in every node's map.
		await setA([
			{ pod: initial[1]!, cond: 'ready' },
			{ pod: initial[2]!, cond: 'ready' },
		]);
		const first = await waitLbFrontend(k, 'the churn Service in every map', 60_000, vip, 80, () => [`${initial[1]!.ip}:8080`, `${initial[2]!.ip}:8080`]);
		t.diagnostic(`churn ${vip}:80 is service id ${first.id}, in the maps ${first.ms} ms after its slice was written`);

		// The client: connects in a loop (a breath of 20 ms between) for the whole churn and a few seconds after it.
		const loopSeconds = Math.ceil((CHURN_STEPS * STEP_MS) / 1000) + 4;
		const loop = k.kubectl(
			[
				'-n',
				NS,
				'exec',
				clientPod,
				'--',
				'sh',
				'-c',
				`end=$(( $(cut -d. -f1 /proc/uptime) + ${loopSeconds} )); while :; do read t0 rest < /proc/uptime; [ "\${t0%.*}" -ge "$end" ] && break; ` +
					`out=$(timeout 3 wget -q -O - http://${vip}:80/ 2>&1); rc=$?; read t1 rest < /proc/uptime; echo "$t0 $t1 $rc $(printf %s "$out" | tr '\\n' ' ')"; usleep 20000; done`,
			],
			{ allowFail: true, timeoutMs: (loopSeconds + 30) * 1000 },
		);

		const start = Date.now();
		let max = 0;
		for (let i = 0; i < CHURN_STEPS; i++) {
			await sleep(Math.max(0, start + i * STEP_MS - Date.now()));
			const live = (await readyPods(k, NS, 'pool')).filter((p) => p.pod !== never.pod && !deleted.has(p.ip));
			for (const p of live) seen.set(p.pod, p);
			// Twice, a pod that is a backend right now is deleted at once (no grace) before its
			// endpoint goes, as when a node's kubelet kills it: the one window a connect may hang.
			if (i === 9 || i === 19) {
				const victim = live.find((p) => readyIps().has(p.ip));
				if (victim) {
					deleted.set(victim.ip, { pod: victim, at: uptime() });
					await k.kubectl(['-n', NS, 'delete', 'pod', victim.pod, '--grace-period=0', '--force', '--wait=false']);
					live.splice(live.indexOf(victim), 1);
				}
			}
			let eps: Ep[];
			if (i === 0 || i === CHURN_STEPS - 1) {
				eps = live.map((pod) => ({ pod, cond: 'ready' })); // all of them: the most slots
			} else if (i % 6 === 3) {
				eps = live.map((pod) => ({ pod, cond: rand() < 0.5 ? 'unready' : 'terminating' })); // nothing ready: refused
			} else {
				eps = [];
				for (const pod of live) {
					const r = rand();
					if (r < 0.55) eps.push({ pod, cond: rand() < 0.5 ? 'ready' : 'nil' });
					else if (r < 0.8) eps.push({ pod, cond: (['unready', 'terminating', 'servingTerminating'] as const)[Math.floor(rand() * 3)]! });
				}
				if (!eps.some((e) => makesBackend(e.cond)) && live[0]) eps.push({ pod: live[0], cond: 'ready' });
			}
			const neverEp: Ep = { pod: never, cond: i % 2 ? 'unready' : 'terminating' };
			// Odd steps split the endpoints over a second slice; even ones delete it.
			if (i % 2) {
				await setA([neverEp, ...eps.filter((_, j) => j % 2 === 0)]);
				await setB(eps.filter((_, j) => j % 2 === 1));
			} else {
				await setA([neverEp, ...eps]);
				await setB(undefined);
			}
			max = Math.max(max, readyIps().size);
		}
		// The end: fewer backends than the churn had, one slice.
		const remaining = (await readyPods(k, NS, 'pool')).filter((p) => p.pod !== never.pod && !deleted.has(p.ip));
		for (const p of remaining) seen.set(p.pod, p);
		assert.ok(remaining.length >= 2, `two pool pods to end with: ${remaining.map((p) => p.pod).join(' ')}`);
		await setA([{ pod: never, cond: 'unready' }, ...remaining.slice(0, 2).map((pod): Ep => ({ pod, cond: 'ready' }))]);
		await setB(undefined);
		const final = [...readyIps()].map((ip) => `${ip}:8080`);
		assert.ok(max > final.length, `the churn had more backends (${max}) than the end (${final.length}): stale slots would show`);
		const churnS = ((Date.now() - start) / 1000).toFixed(1);
		// Judged after the connects, which say more when both go wrong.
		const settled = await waitLbFrontend(k, 'every map holding exactly the final backends', RECONCILE_MS, vip, 80, () => final).catch(
			(err: unknown) => err as Error,
		);

		const r = await loop;
		assert.equal(r.code, 0, `the client loop ran to its end: ${r.stderr}`);
		const windows = transitions.map((tr, j) => ({ ...tr, from: tr.at, to: j + 1 < transitions.length ? transitions[j + 1]!.done + RECONCILE_S : Infinity }));
		const overlapping = (t0: number, t1: number): typeof windows => windows.filter((w) => w.from <= t1 + CLOCK_SLACK_S && w.to >= t0 - CLOCK_SLACK_S);
		const dying = (t0: number, t1: number): boolean =>
			[...deleted.values()].some((d) => d.at <= t1 + CLOCK_SLACK_S && (d.cleared === undefined ? Infinity : d.cleared + RECONCILE_S) >= t0 - CLOCK_SLACK_S);
		const states = (ws: typeof windows): string =>
			`${ws.length} states then: ${ws
				.slice(0, 4)
				.map((w) => `[${[...w.ready].join(' ')}]`)
				.join(' ')}${ws.length > 4 ? ' …' : ''}`;
		const stats = { connects: 0, answered: 0, refused: 0, refusedMaxMs: 0, hangsWhileDying: 0, backends: new Set<string>() };
		const violations: string[] = [];
		for (const line of r.stdout.split('\n').filter(Boolean)) {
			const m = /^(\S+) (\S+) (\d+) ?(.*)$/.exec(line);
			if (!m) {
				violations.push(`unparsed: ${line}`);
				continue;
			}
			const t0 = Number(m[1]);
			const t1 = Number(m[2]);
			const out = m[4]!;
			stats.connects++;
			const ws = overlapping(t0, t1);
			const answered = /pod=(\S+) .*status=200/.exec(out);
			if (m[3] === '0' && answered) {
				stats.answered++;
				const p = seen.get(answered[1]!);
				if (!p) violations.push(`${line}: answered by a pod that is not the Service's`);
				else if (p.pod === never.pod) violations.push(`${line}: answered by ${never.pod}, never ready`);
				else if (!ws.some((w) => w.ready.has(p.ip))) violations.push(`${line}: ${p.pod} (${p.ip}) was not ready then; ${states(ws)}`);
				else stats.backends.add(p.pod);
			} else if (/Connection refused/.test(out) && t1 - t0 <= REFUSED_AT_ONCE_S && ws.some((w) => w.ready.size === 0)) {
				stats.refused++;
				stats.refusedMaxMs = Math.max(stats.refusedMaxMs, Math.round((t1 - t0) * 1000));
			} else if (dying(t0, t1)) {
				stats.hangsWhileDying++; // a connect to a pod just deleted, before the agent's reconcile removed it
			} else {
				violations.push(`${line}: neither a ready backend's answer nor an immediate refusal; ${states(ws)}`);
			}
		}
		t.diagnostic(
			`${stats.connects} connects: ${stats.answered} answered by ${stats.backends.size} pods, ${stats.refused} refused (slowest ${stats.refusedMaxMs} ms as the client saw it), ${stats.hangsWhileDying} failed while a deleted pod was still listed`,
		);
		assert.deepEqual(violations.slice(0, 20), [], `${violations.length} connects went wrong`);
		assert.ok(stats.connects >= CHURN_STEPS * 3, `the client connected often enough (${stats.connects})`);
		assert.ok(stats.backends.size >= 3, `the connects were spread over the changing backends (${[...stats.backends].join(' ')})`);
		assert.ok(stats.refused >= 1, 'the steps with no ready endpoint refused connects');
		assert.equal(deleted.size, 2, 'two backends were deleted mid-churn');
		if (settled instanceof Error) throw settled;
		t.diagnostic(`${transitions.length} slice writes in ${churnS} s; the maps held the final ${final.length} backends ${settled.ms} ms after the last write`);
		for (const [node, entries] of settled.byNode) assert.deepEqual(lbMapProblems(entries), [], `${node}: nothing leaked in the whole map`);
	});

	test('a backend deleted under a long-lived connection: the connection ends, the client reconnects at once, the map forgets it', async (t) => {
		const k = cluster();
		const vip = await clusterIpOf(k, 'long');
		const pods = await waitPods(k, NS, 'long', 2);
		await waitLbFrontend(k, 'the long Service in every map', 60_000, vip, 9000, () => apiReady(k, 'long', 'echo'));
		// A line every 200 ms through the TCP echo; when the connection ends, a new connect at once.
		const conn = inPod(
			k,
			NS,
			clientPod,
			`(i=0; while [ $i -lt 600 ]; do echo "ping $i"; i=$((i+1)); sleep 0.2; done) | nc ${vip} 9000; echo "ended rc=$? at $(cut -d' ' -f1 /proc/uptime)"; ` +
				`out=$(timeout 3 wget -q -O - http://${vip}:8080/ 2>&1); echo "reconnect rc=$? at $(cut -d' ' -f1 /proc/uptime) $out"`,
			120_000,
		);
		// The socket is connected to the backend itself (the translation happened at connect()).
		const peer = await waitFor(
			'the long-lived connection established',
			20_000,
			async () => {
				const r = await inPod(k, NS, clientPod, `netstat -tn | awk '$6 == "ESTABLISHED" && $5 ~ /:9000$/ { print $5 }'`);
				return r.out.split('\n')[0]?.split(':')[0] || undefined;
			},
			200,
		);
		const victim = pods.find((p) => p.ip === peer);
		assert.ok(victim, `the connection went to a backend of the Service (${peer}), not the ClusterIP`);
		await sleep(1000);
		const deletedAt = uptime();
		await k.kubectl(['-n', NS, 'delete', 'pod', victim.pod, '--wait=false']);
		const r = await conn;
		assert.equal(r.code, 0, r.out);
		const pings = r.out.split('\n').filter((l) => /^ping \d+$/.test(l)).length;
		assert.ok(pings >= 3, `the connection carried data before the pod went: ${r.out}`);
		const ended = /^ended rc=(\d+) at (\S+)$/m.exec(r.out);
		assert.ok(ended, `the client saw its connection end: ${r.out}`);
		const again = /^reconnect rc=(\d+) at (\S+) (.*)$/m.exec(r.out);
		assert.ok(again, r.out);
		assert.equal(again[1], '0', `the reconnect was answered: ${again[0]}`);
		const by = /pod=(\S+)/.exec(again[3]!)?.[1];
		assert.ok(by && by !== victim.pod && by.startsWith('long-'), `the reconnect reached another backend of the Service: ${again[0]}`);
		t.diagnostic(
			`connection to ${victim.pod} ended (nc exit ${ended[1]}) ${(Number(ended[2]) - deletedAt).toFixed(2)} s after the delete, after ${pings} echoes; ` +
				`the reconnect to ${by} answered ${(Number(again[2]) - Number(ended[2])).toFixed(2)} s later`,
		);

		// The map: the deleted pod gone from every port of the Service, within the reconcile of the API's change.
		await waitFor('the API no longer listing the deleted pod as ready', 30_000, async () =>
			(await apiReady(k, 'long', 'echo')).some((b) => b.startsWith(`${victim.ip}:`)) ? undefined : true,
		);
		const t0 = Date.now();
		await waitFor(
			`${victim.ip} gone from every node's map`,
			RECONCILE_MS,
			async () => {
				for (const n of k.nodes) {
					const entries = await lbMapEntries(k, n.name);
					const mine = entries.filter((e) => e.vip === vip);
					if (mine.some((e) => e.slot > 0 && e.backend.startsWith(`${victim.ip}:`)) || lbMapProblems(mine).length) return undefined;
				}
				return true;
			},
			100,
		);
		t.diagnostic(`${victim.ip} left the maps ${Date.now() - t0} ms after the API dropped it`);
		const answers = await connects(k, clientPod, vip, 8080, 10);
		for (const a of answers) {
			assert.match(a, /^rc=0 pod=long-\S+ .*status=200/, 'every new connect is answered');
			assert.doesNotMatch(a, new RegExp(`pod=${victim.pod} `), 'and not by the deleted pod');
		}
	});

	test('a Service deleted and recreated with its ClusterIP and other backends: only the new ones, the old id gone', async (t) => {
		const k = cluster();
		const olds = await waitPods(k, NS, 'old', 2);
		const news = await waitPods(k, NS, 'new', 2);
		await apply(k, reService('old'));
		const vip = await clusterIpOf(k, 're');
		const before = await waitLbFrontend(k, 're with the old backends', 60_000, vip, 8080, () => olds.map((p) => `${p.ip}:8080`));
		const named = await inPod(k, NS, clientPod, getByName(`re.${NS}.svc.cluster.local`, 5));
		assert.match(named.out, /pod=old-\S+ .*status=200/, `the name reaches an old backend: ${named.out}`);

		await k.kubectl(['-n', NS, 'delete', 'service', 're']);
		const t0 = Date.now();
		await waitFor(
			`${vip}:8080 gone from every node's map`,
			RECONCILE_MS,
			async () => {
				for (const n of k.nodes) {
					const entries = await lbMapEntries(k, n.name);
					if (entries.some((e) => e.vip === vip)) return undefined;
				}
				return true;
			},
			100,
		);
		t.diagnostic(`re (id ${before.id}) left the maps ${Date.now() - t0} ms after its delete returned`);

		// The ClusterIP may take a moment to be free again.
		await waitFor(
			're recreated with the same ClusterIP',
			30_000,
			async () => {
				const r = await k.kubectl(['create', '-f', '-'], { input: JSON.stringify(reService('new', vip)), allowFail: true });
				return r.code === 0 ? true : undefined;
			},
			500,
		);
		assert.equal(await clusterIpOf(k, 're'), vip);
		const want = news.map((p) => `${p.ip}:8080`).sort();
		// The new Service's slices are the controller-manager's work, then the agent's reconcile.
		await waitFor(
			'the API listing only the new backends',
			60_000,
			async () => ((await apiReady(k, 're', 'http')).join(' ') === want.join(' ') ? true : undefined),
			200,
		);
		const after = await waitLbFrontend(k, 're with only the new backends', RECONCILE_MS, vip, 8080, () => want);
		t.diagnostic(`re recreated as id ${after.id} (was ${before.id}); in the maps ${after.ms} ms after the API listed its backends`);
		for (const [node, entries] of after.byNode) {
			assert.deepEqual(
				entries.filter((e) => e.serviceId === before.id),
				[],
				`${node}: no entry of the old service id ${before.id}`,
			);
			assert.deepEqual(lbFrontend(entries, vip, 8080)?.backends, want);
		}
		const answers = await connects(k, clientPod, vip, 8080, 12);
		for (const a of answers) assert.match(a, /^rc=0 pod=new-\S+ .*status=200/, 'only the new backends answer');
		const byName = await inPod(k, NS, clientPod, getByName(`re.${NS}.svc.cluster.local`, 5));
		assert.match(byName.out, /pod=new-\S+ .*status=200/, `the name reaches a new backend: ${byName.out}`);
	});

	test('the agents never restarted and logged no error; no map holds a leaked entry', async () => {
		const k = cluster();
		const trouble = await agentTrouble(k);
		assert.deepEqual(trouble.restarts, []);
		assert.deepEqual(trouble.errors, []);
		for (const n of k.nodes) assert.deepEqual(lbMapProblems(await lbMapEntries(k, n.name)), [], n.name);
	});
});
