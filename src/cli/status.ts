// `weir status`: per node, is the agent ready, is the datapath loaded, how many
// endpoints and policies it enforces, and the last error. The first thing to run when
// something is off.
//
// By default it finds the agents through the Kubernetes API (the weir-agent pods of
// the DaemonSet) and reads each one's GET /v1/status through the API server's pod
// proxy, so it works wherever kubectl works (kind, the local cluster) without a route
// to the nodes. --server reads agents directly instead.
import * as k8s from '@kubernetes/client-node';
import { Command, Option } from 'commander';
import type { AgentStatus } from '../shared/agent-status.js';
import { DEFAULTS } from '../shared/defaults.js';

export const AGENT_LABEL = 'app.kubernetes.io/name=weir-agent';
export const AGENT_PORT = DEFAULTS.observerPort;

/** One row: a node, its agent pod, and the status it answered (or why not). */
export interface NodeStatus {
	node: string;
	pod?: string;
	/** pod phase and container readiness as Kubernetes sees them */
	podPhase?: string;
	podReady?: boolean;
	restarts?: number;
	status?: AgentStatus;
	/** why the status could not be read */
	unreachable?: string;
}

export interface StatusReport {
	daemonSet?: { desired: number; ready: number; updated: number; available: number; image: string };
	nodes: NodeStatus[];
}

/** The CLI's view of the cluster: small enough to fake in unit tests. */
export interface StatusSource {
	collect(): Promise<StatusReport>;
}

function short(err: unknown): string {
	const e = err as { body?: unknown; message?: string; code?: number };
	const body = typeof e.body === 'string' ? e.body : e.body ? JSON.stringify(e.body) : '';
	return `${e.message ?? String(err)}${body ? `: ${body.slice(0, 200)}` : ''}`.replace(/\s+/g, ' ').trim();
}

/** Reads agents through the API server (DaemonSet pods + pod proxy). */
export class KubeStatusSource implements StatusSource {
	constructor(
		private readonly kc: k8s.KubeConfig,
		private readonly namespace: string,
	) {}

	async collect(): Promise<StatusReport> {
		const core = this.kc.makeApiClient(k8s.CoreV1Api);
		const apps = this.kc.makeApiClient(k8s.AppsV1Api);
		let pods: k8s.V1Pod[];
		let nodes: k8s.V1Node[];
		try {
			pods = (await core.listNamespacedPod({ namespace: this.namespace, labelSelector: AGENT_LABEL })).items;
			nodes = (await core.listNode()).items;
		} catch (err) {
			throw new Error(
				`cannot list Weir's agents in namespace ${this.namespace} (${short(err)}): check the kubeconfig and that Weir is installed (kubectl apply -k deploy/)`,
			);
		}
		const report: StatusReport = { nodes: [] };
		try {
			const ds = await apps.readNamespacedDaemonSet({ name: 'weir-agent', namespace: this.namespace });
			report.daemonSet = {
				desired: ds.status?.desiredNumberScheduled ?? 0,
				ready: ds.status?.numberReady ?? 0,
				updated: ds.status?.updatedNumberScheduled ?? 0,
				available: ds.status?.numberAvailable ?? 0,
				image: ds.spec?.template.spec?.containers.find((c) => c.name === 'agent')?.image ?? '',
			};
		} catch {
			// no DaemonSet: the rows say so through missing pods
		}
		const byNode = new Map<string, k8s.V1Pod>();
		for (const p of pods) {
			const n = p.spec?.nodeName;
			if (!n || p.metadata?.deletionTimestamp) continue;
			byNode.set(n, p);
		}
		const rows = await Promise.all(
			nodes.map(async (node): Promise<NodeStatus> => {
				const name = node.metadata?.name ?? '?';
				const pod = byNode.get(name);
				if (!pod) return { node: name, unreachable: 'no weir-agent pod on this node' };
				const agent = pod.status?.containerStatuses?.find((c) => c.name === 'agent');
				const row: NodeStatus = {
					node: name,
					pod: pod.metadata?.name ?? '?',
					podPhase: pod.status?.phase ?? 'Unknown',
					podReady: agent?.ready ?? false,
					restarts: agent?.restartCount ?? 0,
				};
				try {
					const text = await core.connectGetNamespacedPodProxyWithPath({
						name: `${row.pod}:${AGENT_PORT}`,
						namespace: this.namespace,
						path: 'v1/status',
					});
					row.status = (typeof text === 'string' ? JSON.parse(text) : text) as AgentStatus;
				} catch (err) {
					row.unreachable = `agent API not answering (${short(err)})`;
				}
				return row;
			}),
		);
		report.nodes = rows.sort((a, b) => a.node.localeCompare(b.node));
		return report;
	}
}

/** Reads agents directly by URL (e.g. a port-forward). */
export class DirectStatusSource implements StatusSource {
	constructor(private readonly servers: string[]) {}

	async collect(): Promise<StatusReport> {
		const nodes = await Promise.all(
			this.servers.map(async (server): Promise<NodeStatus> => {
				try {
					const res = await fetch(`${server.replace(/\/$/, '')}/v1/status`, { signal: AbortSignal.timeout(5000) });
					if (!res.ok) return { node: server, unreachable: `${server} answered ${res.status}` };
					const status = (await res.json()) as AgentStatus;
					return { node: status.node, status };
				} catch (err) {
					return { node: server, unreachable: `cannot reach ${server} (${short((err as Error).cause ?? err)})` };
				}
			}),
		);
		return { nodes };
	}
}

/** Whether everything is healthy: every node has a ready agent with a loaded datapath and no error. */
export function healthy(r: StatusReport): boolean {
	return r.nodes.length > 0 && r.nodes.every((n) => !n.unreachable && n.status?.ready && n.status.datapath.loaded && !n.status.lastError);
}

function table(rows: string[][]): string[] {
	const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
	return rows.map((r) =>
		r
			.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
			.join('  ')
			.trimEnd(),
	);
}

/** Human-readable report (pure). */
export function formatStatus(r: StatusReport): string[] {
	const out: string[] = [];
	if (r.daemonSet) {
		const d = r.daemonSet;
		out.push(`DaemonSet weir-agent: ${d.ready}/${d.desired} ready, ${d.updated} up to date, image ${d.image}`);
	}
	const rows: string[][] = [['NODE', 'AGENT', 'DATAPATH', 'ENDPOINTS', 'POLICIES', 'LAST ERROR']];
	for (const n of r.nodes) {
		const s = n.status;
		if (!s) {
			const pod = n.pod ? `${n.pod} ${n.podPhase}${n.podReady ? '' : ' not-ready'}` : 'missing';
			rows.push([n.node, pod, '?', '?', '?', n.unreachable ?? '']);
			continue;
		}
		const agent = `${s.ready ? 'ready' : s.synced ? 'NOT READY' : 'NOT READY (syncing)'} v${s.version}${n.restarts ? ` (${n.restarts} restarts)` : ''}`;
		const dp = s.datapath.loaded ? `loaded, ${s.datapath.attachments} veth${s.datapath.attachments === 1 ? '' : 's'}` : 'NOT LOADED';
		const meshed = s.endpoints.meshed ? `, ${s.endpoints.meshed} meshed` : '';
		const eps = `${s.endpoints.local} (${s.endpoints.isolated} isolated${meshed})`;
		const pol = `${s.policy.enforcedHere.length} enforced / ${s.policy.networkPolicies}`;
		rows.push([n.node, agent, dp, eps, pol, s.lastError ?? (s.policy.problems.length ? `${s.policy.problems.length} policy problems` : '-')]);
	}
	out.push(...table(rows));
	for (const n of r.nodes) {
		for (const p of n.status?.policy.problems ?? []) out.push(`  ${n.node}: ${p.policy}: ${p.message}`);
		if (n.status?.policy.enforcedHere.length) out.push(`  ${n.node} enforces: ${n.status.policy.enforcedHere.join(', ')}`);
	}
	out.push(healthy(r) ? 'Weir is healthy on every node.' : 'Weir is NOT healthy: see the rows above (kubectl -n weir-system logs ds/weir-agent -c agent).');
	return out;
}

interface StatusOpts {
	kubeconfig?: string;
	namespace: string;
	server?: string[];
	output: 'table' | 'json';
}

export async function runStatus(source: StatusSource, output: 'table' | 'json', out: (s: string) => void): Promise<boolean> {
	const report = await source.collect();
	if (output === 'json') out(JSON.stringify(report, null, 2));
	else for (const l of formatStatus(report)) out(l);
	return healthy(report);
}

/** Registers `weir status` on the CLI. Exit code 1 when any node is unhealthy. */
export function statusCommand(out: (s: string) => void, source?: (o: StatusOpts) => StatusSource): Command {
	return new Command('status')
		.description('per node: agent ready, datapath loaded, endpoints, policies enforced, last error')
		.option('--kubeconfig <path>', 'kubeconfig (default: $KUBECONFIG or ~/.kube/config)')
		.option('--namespace <ns>', "Weir's namespace", 'weir-system')
		.option('--server <url...>', 'read these agents directly (observer API URLs) instead of through the API server')
		.addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
		.action(async (o: StatusOpts) => {
			let src: StatusSource;
			if (source) src = source(o);
			else if (o.server?.length) src = new DirectStatusSource(o.server);
			else {
				const kc = new k8s.KubeConfig();
				if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
				else kc.loadFromDefault();
				src = new KubeStatusSource(kc, o.namespace);
			}
			const ok = await runStatus(src, o.output, out);
			if (!ok) process.exitCode = 1;
		});
}
