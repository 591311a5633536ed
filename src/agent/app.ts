// weir-agent's composition root: builds every part of the node agent from its
// configuration and wires them. No module keeps state of its own; everything lives
// in the Agent built here.
import * as k8s from '@kubernetes/client-node';
import Fastify, { FastifyInstance } from 'fastify';
import pino, { Logger } from 'pino';
import { Datapath } from '../bpf/datapath.js';
import { ensureBpffs } from '../bpf/bpffs.js';
import { FlowRing } from '../observe/flow-ring.js';
import { toFlow } from '../observe/flow.js';
import { observeApi } from '../observe/api.js';
import { LocalEndpoint, PolicyController, monoToWallClock } from '../policy/controller.js';
import { ClusterWatches } from '../policy/watch.js';
import { AgentMetrics } from './metrics.js';

export interface AgentConfig {
	/** this node's name, as in the Node object */
	nodeName: string;
	/** bpffs directory of this node's datapath */
	pinRoot: string;
	/** kubeconfig path; in-cluster config when undefined */
	kubeconfig?: string;
	/** observer API and /metrics listen address */
	observerHost: string;
	observerPort: number;
	/** flows kept in memory */
	flowBuffer: number;
	/** conntrack GC period (ms) */
	ctGcIntervalMs: number;
	logLevel: string;
}

export const DEFAULT_AGENT_CONFIG: Omit<AgentConfig, 'nodeName'> = {
	pinRoot: '/sys/fs/bpf/weir',
	observerHost: '0.0.0.0',
	observerPort: 9962,
	flowBuffer: 8192,
	ctGcIntervalMs: 30_000,
	logLevel: 'info',
};

/** Where local endpoints come from (the CNI server's endpoint store). */
export interface EndpointSource {
	list(): readonly LocalEndpoint[];
	onChange(cb: () => void): void;
}

export class Agent {
	private unsubscribe: (() => void) | undefined;
	private gcTimer: NodeJS.Timeout | undefined;

	constructor(
		readonly config: AgentConfig,
		readonly log: Logger,
		readonly datapath: Datapath,
		readonly watches: ClusterWatches,
		readonly controller: PolicyController,
		readonly flows: FlowRing,
		readonly http: FastifyInstance,
		readonly metrics: AgentMetrics,
	) {}

	async start(): Promise<void> {
		const wall = monoToWallClock();
		const ctx = this.controller.flowContext(wall);
		this.unsubscribe = this.datapath.subscribe((ev) => {
			const flow = toFlow(ev, ctx);
			this.flows.add(flow);
			this.metrics.flow(flow);
		});
		this.watches.start();
		this.gcTimer = setInterval(() => {
			const removed = this.datapath.gcConntrack();
			if (removed) this.log.debug({ removed }, 'conntrack GC');
		}, this.config.ctGcIntervalMs);
		this.gcTimer.unref();
		await this.http.listen({ host: this.config.observerHost, port: this.config.observerPort });
		this.log.info({ port: this.config.observerPort }, 'observer API and metrics listening');
	}

	async stop(): Promise<void> {
		clearInterval(this.gcTimer);
		this.unsubscribe?.();
		this.controller.stop();
		await this.watches.stop();
		await this.http.close();
		// Maps and links stay pinned: enforcement continues without the agent.
		this.datapath.close();
	}
}

export async function buildAgent(config: AgentConfig, endpoints: EndpointSource, log: Logger = pino({ level: config.logLevel })): Promise<Agent> {
	ensureBpffs();
	const datapath = await Datapath.open({ pinRoot: config.pinRoot });
	const kc = new k8s.KubeConfig();
	if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
	else kc.loadFromCluster();

	const metrics = new AgentMetrics(datapath);
	let controller: PolicyController | undefined;
	const watches = new ClusterWatches(kc, log.child({ component: 'watch' }), () => controller?.schedule());
	controller = new PolicyController({
		node: config.nodeName,
		snapshot: () => ({
			synced: watches.isSynced,
			pods: watches.pods.list(),
			namespaces: watches.namespaces.list(),
			policies: watches.policies.list(),
			nodes: watches.nodes.list(),
		}),
		endpoints: () => endpoints.list(),
		maps: datapath,
		log: log.child({ component: 'policy' }),
		observer: metrics,
	});
	endpoints.onChange(() => controller!.schedule());

	const flows = new FlowRing(config.flowBuffer);
	const http = Fastify({ logger: false });
	await http.register(observeApi, { ring: flows });
	http.get('/metrics', async (_req, reply) => {
		reply.header('content-type', metrics.registry.contentType);
		return metrics.registry.metrics();
	});
	http.get('/healthz', async () => ({ ok: true }));
	http.get('/readyz', async (_req, reply) => {
		const ready = watches.isSynced && controller!.runs > 0;
		reply.code(ready ? 200 : 503);
		return { ready, synced: watches.isSynced, lastError: controller!.lastError ?? null };
	});
	return new Agent(config, log, datapath, watches, controller, flows, http, metrics);
}
