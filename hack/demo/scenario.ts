// The segregation scenario of DESIGN.md on a cluster: namespaces a-ingress, b-apache,
// c-app, d-redis, one workload each (the local cluster's test image: HTTP echo :8080,
// TCP echo :9000, a Redis-speaking service :6379), and the NetworkPolicy in d-redis that
// admits only c-app. Pure manifest builders plus thin kubectl shells.
import type { Cluster } from '../cluster/cluster.js';
import { waitFor } from '../cluster/exec.js';

export interface Workload {
	namespace: string;
	name: string;
	/** pin to a node (the demo spreads them so some traffic crosses nodes) */
	node?: string;
}

export const SCENARIO: readonly Workload[] = [
	{ namespace: 'a-ingress', name: 'ingress' },
	{ namespace: 'b-apache', name: 'apache' },
	{ namespace: 'c-app', name: 'app' },
	{ namespace: 'd-redis', name: 'redis' },
];

export const POLICY_NAME = 'redis-allow-c-app';

/** Spreads the workloads: redis alone on the last node, the others on the first. */
export function placement(nodes: readonly string[]): Workload[] {
	const first = nodes[0]!;
	const last = nodes[nodes.length - 1]!;
	return SCENARIO.map((w) => ({ ...w, node: w.name === 'redis' ? last : first }));
}

type Obj = Record<string, unknown>;

/** A Deployment of the workload image (HTTP echo :8080, TCP echo :9000, Redis :6379), pods labelled app=<name>. */
export function workloadDeployment(image: string, w: Workload, replicas = 1): Obj {
	const labels = { app: w.name };
	return {
		apiVersion: 'apps/v1',
		kind: 'Deployment',
		metadata: { name: w.name, namespace: w.namespace, labels },
		spec: {
			replicas,
			selector: { matchLabels: labels },
			template: {
				metadata: { labels },
				spec: {
					...(w.node ? { nodeSelector: { 'kubernetes.io/hostname': w.node } } : {}),
					terminationGracePeriodSeconds: 1,
					// Service links would set REDIS_PORT=tcp://… in the redis pod (its
					// Service is called redis), which the workload reads as its port.
					enableServiceLinks: false,
					containers: [
						{
							name: w.name,
							image,
							imagePullPolicy: 'IfNotPresent',
							env: [
								{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
								{ name: 'VERSION', value: 'v1' },
							],
							ports: [
								{ name: 'http', containerPort: 8080 },
								{ name: 'echo', containerPort: 9000 },
								{ name: 'redis', containerPort: 6379 },
							],
							readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 2 },
						},
					],
				},
			},
		},
	};
}

/** The workload's Service: selector app=<name>, its three ports under their names. */
export function workloadService(w: Workload, spec: Obj = {}): Obj {
	return {
		apiVersion: 'v1',
		kind: 'Service',
		metadata: { name: w.name, namespace: w.namespace },
		spec: {
			selector: { app: w.name },
			ports: [
				{ name: 'http', port: 8080, targetPort: 8080 },
				{ name: 'echo', port: 9000, targetPort: 9000 },
				{ name: 'redis', port: 6379, targetPort: 6379 },
			],
			...spec,
		},
	};
}

export function scenarioManifests(image: string, workloads: readonly Workload[]): Obj {
	const items: Obj[] = [];
	for (const w of workloads) {
		items.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: w.namespace } });
		items.push(workloadDeployment(image, w));
		items.push(workloadService(w));
	}
	return { apiVersion: 'v1', kind: 'List', items };
}

/** The policy of the scenario: redis in d-redis admits only pods of namespace c-app, on 6379. */
export function redisPolicy(): Obj {
	return {
		apiVersion: 'networking.k8s.io/v1',
		kind: 'NetworkPolicy',
		metadata: { name: POLICY_NAME, namespace: 'd-redis' },
		spec: {
			podSelector: { matchLabels: { app: 'redis' } },
			policyTypes: ['Ingress'],
			ingress: [
				{
					from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'c-app' } } }],
					ports: [{ protocol: 'TCP', port: 6379 }],
				},
			],
		},
	};
}

export interface PodRef {
	namespace: string;
	name: string;
	pod: string;
	ip: string;
	node: string;
}

export async function deployScenario(c: Cluster, workloads: readonly Workload[]): Promise<void> {
	await c.kubectl(['apply', '-f', '-'], { input: JSON.stringify(scenarioManifests(c.images.workload, workloads)) });
}

/** Waits until every scenario pod is Running and Ready; returns them with their IPs. */
export async function waitScenario(c: Cluster, timeoutMs: number, log: (m: string) => void = () => {}): Promise<Map<string, PodRef>> {
	let last = '';
	return waitFor(
		'scenario pods Running and Ready',
		timeoutMs,
		async () => {
			const out = new Map<string, PodRef>();
			const states: string[] = [];
			for (const w of SCENARIO) {
				const r = await c.kubectl(['-n', w.namespace, 'get', 'pods', '-l', `app=${w.name}`, '-o', 'json'], { allowFail: true });
				if (r.code !== 0) return undefined;
				const items = (
					JSON.parse(r.stdout) as {
						items: Array<{
							metadata: { name: string; deletionTimestamp?: string };
							spec: { nodeName?: string };
							status: { phase?: string; podIP?: string; conditions?: Array<{ type: string; status: string }> };
						}>;
					}
				).items.filter((p) => !p.metadata.deletionTimestamp);
				const p = items[0];
				const ready = p?.status.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') ?? false;
				states.push(`${w.namespace}/${w.name}=${p ? (ready ? 'Ready' : (p.status.phase ?? '?')) : 'none'}`);
				if (p && ready && p.status.podIP)
					out.set(w.name, { namespace: w.namespace, name: w.name, pod: p.metadata.name, ip: p.status.podIP, node: p.spec.nodeName ?? '' });
			}
			const line = states.join(' ');
			if (line !== last) log(line);
			last = line;
			return out.size === SCENARIO.length ? out : undefined;
		},
		1000,
	);
}

export interface Probe {
	from: PodRef;
	to: PodRef;
	port: number;
	ok: boolean;
	detail: string;
}

/**
 * One new TCP connection from a pod to another: a Redis PING on 6379 (answer +PONG),
 * or an HTTP GET on 8080. `ok` means the server answered.
 */
export async function probe(c: Cluster, from: PodRef, to: PodRef, port: 6379 | 8080, target = to.ip): Promise<Probe> {
	const cmd = port === 6379 ? `printf 'PING\\r\\n' | timeout 4 nc -w 3 ${target} 6379` : `timeout 4 wget -q -O - http://${target}:8080/`;
	const r = await c.kubectl(['-n', from.namespace, 'exec', from.pod, '--', 'sh', '-c', cmd], { allowFail: true, timeoutMs: 20_000 });
	const out = r.stdout.trim();
	const ok = r.code === 0 && (port === 6379 ? out.includes('+PONG') : out.includes('status=200'));
	return { from, to, port, ok, detail: ok ? out.split('\n')[0]! : `exit ${r.code}${r.stderr.trim() ? `: ${r.stderr.trim().split('\n').pop()}` : ''}` };
}

export function formatProbe(p: Probe): string {
	const lhs = `${p.from.namespace}/${p.from.name}`.padEnd(18);
	const rhs = `${p.to.namespace}/${p.to.name}:${p.port}`.padEnd(22);
	return `  ${lhs} -> ${rhs} ${p.ok ? `connected (${p.detail})` : 'REFUSED (no answer: dropped)'}`;
}
