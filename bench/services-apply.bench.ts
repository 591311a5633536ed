// Services benchmark, second part: the agent's time to apply 1 000 EndpointSlice
// changes to the socket load balancer's pinned map, next to the API server's own time
// for the same writes with no agent watching. Prints; never asserts.
//   node dist/bench/services-apply.bench.js [--quick]   (root; scripts/bench.sh services
//   runs it after the connect() figures; it starts a local API server, so wrap it in
//   flock /tmp/weir-cluster.lock where others share the machine)
//
// What runs for real (bench/api-agent.ts): etcd and kube-apiserver from the upstream
// binaries (the local cluster's control-plane mode, 127.0.0.1), and the whole weir-agent
// (dist/src/agent/main.js, its DaemonSet runtime flags) as a host process with
// kube-proxy-replacement on and --cgroup-root an empty cgroup made for this run: the
// four programs attach there and translate no process, while the agent's services path
// is the one it runs on a node — Services and EndpointSlices informers on the real API
// server → ServiceController (src/services/) → SocketLb.upsertService into
// weir_lb4_services pinned in a test pin root. The benchmark only reads that map.
//
// 1. Preload: 1 000 ClusterIP Services (one TCP port) in 10 namespaces, each with one
//    EndpointSlice of 10 ready endpoints (no EndpointSlice controller runs in this mode:
//    the slices are the benchmark's).
// 2. Baseline, no agent running: N writes (JSON merge patch of a slice's endpoints:
//    endpoint 0 turns not ready), each to a different Service, spread over all of them,
//    IN_FLIGHT at a time as fast as the API server answers (kept-alive connections,
//    bench/api-agent.ts ApiClient); the time from the first write sent to the last
//    acknowledged, and each write's round trip. Then the same writes back (ready
//    again), still with no agent.
// 3. The agent starts; the time until the map holds 1 000 frontends × 10 backends.
// 4. Measured: the same N writes (ready → not ready) while the agent runs. A loop in
//    this process reads, every millisecond or so, the master entry (slot 0: the backend
//    count) of each Service written to and not yet seen; a change is applied when the
//    count is 9 (upsertService writes the master last, so the whole entry is in place).
//    Total: first write sent → last change seen in the map. Per change: its write's
//    acknowledgement → the read that saw it (0 when the map had it before the ack
//    arrived; counted). The agent's CPU time (utime + stime) over the phase, and the
//    API server's and etcd's in every phase.
// 5. The agent stops; the writes back once more with no agent. The ratio's baseline is
//    the median of the three no-agent passes: on a shared machine one pass alone moves
//    by 2x between runs.
// On this 2-core machine the API server, etcd, the agent and this process share the
// cores; the ratios are of one run.
import { join } from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import { native } from '../src/kernel/addon.js';
import { IPPROTO, decodeLb4Service, lb4Key } from '../src/kernel/codecs.js';
import { MapName } from '../src/kernel/layout.js';
import { SERVICE_NAME_LABEL } from '../src/services/compile.js';
import { ApiAgentLab, ApiClient, cpuSeconds, inFlight } from './api-agent.js';
import { pct } from './stats.js';

const quick = process.argv.includes('--quick');
const SERVICES = 1000;
const BACKENDS = 10;
const NAMESPACES = 10;
const CHANGES = quick ? 100 : 1000;
const IN_FLIGHT = 20;
const NODE = 'bench-node';
const PORT = 80;
const TARGET_PORT = 8080;

const ns = (i: number): string => `svc-ns${i % NAMESPACES}`;
const name = (i: number): string => `svc-${i}`;
/** The Service written to by change c: spread evenly over all of them, each at most once. */
const target = (c: number): number => c * Math.floor(SERVICES / CHANGES);

/** The i-th Service's endpoints; the first one ready or not. */
function endpoints(i: number, firstReady: boolean): k8s.V1Endpoint[] {
	return Array.from({ length: BACKENDS }, (_, b) => ({
		addresses: [`10.200.${i >> 4}.${((i & 15) << 4) + b + 1}`],
		conditions: { ready: b === 0 ? firstReady : true },
	}));
}

interface Pass {
	/** first write sent -> last acknowledged, ms */
	totalMs: number;
	/** each write's round trip, ms */
	rtt: number[];
	apiCpuS: number;
	etcdCpuS: number;
	/** this process's, which sends the writes (and, with the agent, reads the map) */
	writerCpuS: number;
}

interface Change {
	svc: number;
	key: Buffer;
	sentAt: number;
	ackAt?: number;
	seenAt?: number;
}

function ms(x: number): string {
	return `${x.toFixed(1)} ms`;
}

function line(label: string, p: Pass): string {
	return `${label.padEnd(44)} ${ms(p.totalMs).padStart(10)}  ${((CHANGES / p.totalMs) * 1000).toFixed(0).padStart(5)}/s  round trip p50 ${ms(pct(p.rtt, 50))}, p99 ${ms(pct(p.rtt, 99))}; CPU: API server ${p.apiCpuS.toFixed(2)} s, etcd ${p.etcdCpuS.toFixed(2)} s, writer ${p.writerCpuS.toFixed(2)} s`;
}

async function main(): Promise<void> {
	const lab = await ApiAgentLab.start('wbsvc', 'bench-svc');
	let api: ApiClient | undefined;
	try {
		api = await ApiClient.open(lab.kc, IN_FLIGHT);
		await bench(lab, api);
	} finally {
		api?.close();
		await lab.destroy();
	}
}

async function bench(lab: ApiAgentLab, api: ApiClient): Promise<void> {
	const apiPid = lab.componentPid('kube-apiserver');
	const etcdPid = lab.componentPid('etcd');
	const slices = (i: number): string => `/apis/discovery.k8s.io/v1/namespaces/${ns(i)}/endpointslices`;

	console.log(
		`# Services benchmark, EndpointSlice changes -> socket LB map (${new Date().toISOString()}): ${SERVICES} Services x ${BACKENDS} backends, ${CHANGES} changes, ${IN_FLIGHT} writes in flight`,
	);
	// 1. Preload.
	let t0 = performance.now();
	for (let n = 0; n < NAMESPACES; n++) await api.send('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns(n) } });
	const vips: string[] = new Array<string>(SERVICES);
	const all = Array.from({ length: SERVICES }, (_, i) => i);
	await inFlight(all, IN_FLIGHT, async (i) => {
		const svc = await api.send<k8s.V1Service>('POST', `/api/v1/namespaces/${ns(i)}/services`, {
			apiVersion: 'v1',
			kind: 'Service',
			metadata: { name: name(i) },
			spec: { type: 'ClusterIP', ports: [{ name: 'http', protocol: 'TCP', port: PORT, targetPort: TARGET_PORT }] },
		});
		vips[i] = svc.spec!.clusterIP!;
		await api.send('POST', slices(i), {
			apiVersion: 'discovery.k8s.io/v1',
			kind: 'EndpointSlice',
			metadata: { name: `${name(i)}-1`, labels: { [SERVICE_NAME_LABEL]: name(i) } },
			addressType: 'IPv4',
			ports: [{ name: 'http', protocol: 'TCP', port: TARGET_PORT }],
			endpoints: endpoints(i, true),
		});
	});
	console.log(`preload: ${SERVICES} Services and ${SERVICES} EndpointSlices created in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

	const changes = Array.from({ length: CHANGES }, (_, c) => target(c));
	/** One pass of the N writes; `onSent`/`onAck` see each write's times. */
	const writes = async (
		firstReady: boolean,
		hooks: { sent?: (svc: number, at: number) => void; ack?: (svc: number, at: number) => void } = {},
	): Promise<Pass> => {
		const rtt: number[] = [];
		const cpu0 = [cpuSeconds(apiPid), cpuSeconds(etcdPid)];
		const own0 = process.cpuUsage();
		const start = performance.now();
		let lastAck = start;
		await inFlight(changes, IN_FLIGHT, async (svc) => {
			const sent = performance.now();
			hooks.sent?.(svc, sent);
			await api.send('PATCH', `${slices(svc)}/${name(svc)}-1`, { endpoints: endpoints(svc, firstReady) }, 'application/merge-patch+json');
			lastAck = performance.now();
			hooks.ack?.(svc, lastAck);
			rtt.push(lastAck - sent);
		});
		const own = process.cpuUsage(own0);
		return {
			totalMs: lastAck - start,
			rtt,
			apiCpuS: cpuSeconds(apiPid) - cpu0[0]!,
			etcdCpuS: cpuSeconds(etcdPid) - cpu0[1]!,
			writerCpuS: (own.user + own.system) / 1e6,
		};
	};

	// 2. Baseline with no agent.
	const noAgent = await writes(false);
	const noAgentBack = await writes(true);

	// 3. The agent, and its maps filled.
	const readyS = await lab.startAgent({ node: NODE, socketLb: true });
	const map = native().openPinnedMap(join(lab.pinRoot, MapName.lb4Services));
	const keys = vips.map((vip) => lb4Key(vip, PORT, IPPROTO.TCP, 0));
	const count = (i: number): number => {
		const v = map.lookup(keys[i]!);
		return v ? decodeLb4Service(v).count : -1;
	};
	t0 = performance.now();
	for (;;) {
		const full = all.filter((i) => count(i) === BACKENDS).length;
		if (full === SERVICES) break;
		if (performance.now() - t0 > 120_000) throw new Error(`after 120 s the map holds ${full} of ${SERVICES} Services with ${BACKENDS} backends`);
		await new Promise((r) => setTimeout(r, 20));
	}
	const filledS = (performance.now() - t0) / 1000 + readyS;
	const entries = map.keys().length;

	// 4. Measured: the writes while the agent watches, the map read until it has them all.
	const pending = new Map<number, Change>();
	const done: Change[] = [];
	let writing = true;
	let earlySeen = 0;
	const poll = async (): Promise<void> => {
		const deadline = () => performance.now() - t0 > 120_000;
		while (writing || pending.size) {
			for (const c of pending.values()) {
				if (count(c.svc) !== BACKENDS - 1) continue;
				c.seenAt = performance.now();
				pending.delete(c.svc);
				done.push(c);
			}
			if (deadline()) throw new Error(`after 120 s ${pending.size} of ${CHANGES} changes are not in the map`);
			await new Promise((r) => setTimeout(r, 1));
		}
	};
	// EndpointSlice events schedule the policy controller too (one onChange for every watch): its runs, from /metrics.
	const policyRuns = async (): Promise<number> => {
		const text = await (await fetch(`http://127.0.0.1:${lab.observerPort}/metrics`)).text();
		return Number(/^weir_policy_compile_seconds_count(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? NaN);
	};
	const policyRuns0 = await policyRuns();
	const agentCpu0 = cpuSeconds(lab.agentPid);
	t0 = performance.now();
	const polling = poll();
	polling.catch(() => undefined); // handled where it is awaited, after the writes
	const withAgent = await writes(false, {
		sent: (svc, at) => pending.set(svc, { svc, key: keys[svc]!, sentAt: at }),
		ack: (svc, at) => {
			const c = pending.get(svc) ?? done.find((d) => d.svc === svc)!;
			c.ackAt = at;
		},
	})
		.catch((err: unknown) => {
			pending.clear(); // the loop ends with the writes; the error is this phase's
			throw err;
		})
		.finally(() => {
			writing = false;
		});
	await polling;
	const applyMs = Math.max(...done.map((c) => c.seenAt!)) - t0;
	const agentCpuS = cpuSeconds(lab.agentPid) - agentCpu0;
	const policyRunsDuring = (await policyRuns()) - policyRuns0;
	const lag = done.map((c) => {
		if (c.seenAt! <= c.ackAt!) earlySeen++;
		return Math.max(0, c.seenAt! - c.ackAt!);
	});
	const fromSent = done.map((c) => c.seenAt! - c.sentAt);
	const rssMb = lab.agentRssMb();
	map.close();

	// 5. The agent gone, the writes back once more.
	await lab.stopAgent();
	const noAgentAfter = await writes(true);

	console.log(
		`agent: ready ${readyS.toFixed(2)} s after start; map holds ${SERVICES} frontends x ${BACKENDS} backends (${entries} entries) ${filledS.toFixed(2)} s after start`,
	);
	console.log(`\n## ${CHANGES} EndpointSlice writes, first sent -> last acknowledged`);
	console.log(line('no agent (ready -> not ready)', noAgent));
	console.log(line('no agent (not ready -> ready)', noAgentBack));
	console.log(line('agent watching (ready -> not ready)', withAgent));
	console.log(line('no agent, after it (not ready -> ready)', noAgentAfter));
	const baselineMs = pct([noAgent.totalMs, noAgentBack.totalMs, noAgentAfter.totalMs], 50);
	console.log(`\n## the agent applying them: first write sent -> the map reflects all ${CHANGES}`);
	console.log(
		`apply time ${ms(applyMs)} = ${(applyMs / baselineMs).toFixed(2)}x the API write time with no agent (${ms(baselineMs)}, the median of its three passes), ${(applyMs / noAgent.totalMs).toFixed(2)}x the pass of the same direction (${ms(noAgent.totalMs)}), ${(applyMs / withAgent.totalMs).toFixed(2)}x the same writes' own time with the agent watching (${ms(withAgent.totalMs)})`,
	);
	console.log(
		`per change, write acknowledged -> in the map: p50 ${ms(pct(lag, 50))}, p99 ${ms(pct(lag, 99))}, max ${ms(Math.max(...lag))} (${earlySeen} of ${CHANGES} in the map before their ack arrived, counted as 0)`,
	);
	console.log(`per change, write sent -> in the map:         p50 ${ms(pct(fromSent, 50))}, p99 ${ms(pct(fromSent, 99))}, max ${ms(Math.max(...fromSent))}`);
	console.log(
		`agent CPU time over the phase: ${agentCpuS.toFixed(2)} s (${((agentCpuS * 1e6) / CHANGES).toFixed(0)} us per change; ${((agentCpuS * 1000) / applyMs).toFixed(2)} of a core); agent RSS ${rssMb.toFixed(0)} MB`,
	);
	console.log(`policy controller runs the same writes triggered (no pods or policies here): ${policyRunsDuring}`);
}

await main();
