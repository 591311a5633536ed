// weir-agent's composition root: builds every part of the node agent from its
// configuration and wires them. No module keeps state of its own; everything lives
// in the Agent built here.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import Fastify, { FastifyInstance } from 'fastify';
import pino, { Logger } from 'pino';
import { Datapath } from '../kernel/datapath.js';
import { ensureBpffs } from '../kernel/bpffs.js';
import { FlowRing } from '../observe/flow-ring.js';
import { toFlow } from '../observe/flow.js';
import { observeApi } from '../observe/api.js';
import { PolicyController } from '../policy/controller.js';
import { FlowIndex } from '../observe/flow-index.js';
import type { EndpointSource, LocalEndpoint } from '../shared/endpoint.js';
import { DEFAULTS } from '../shared/defaults.js';
import { ClusterWatches } from '../cluster/watches.js';
import { AgentMetrics } from './metrics.js';
import { CniConfig, CniService, failClosedEntry } from '../cni-plugin/service.js';
import { EndpointStore } from '../cni-plugin/endpoint-store.js';
import { StatusSources, readiness, statusApi } from './status.js';
import { SocketLb, netnsCookie } from '../kernel/service-lb.js';
import { ServiceController } from '../services/controller.js';
import { resolveCgroupRoot } from './cgroup.js';
import { serviceLookups } from './service-lb.js';
import { installCaptureRouting, removeCaptureRouting } from '../kernel/capture.js';
import { NodeMesh } from './mesh.js';
import { meshFlowSocket } from './mesh-flows.js';
import type { MeshFlowSocket } from '../observe/mesh-flow-socket.js';
import { DEFAULT_ROOT_NAMESPACE } from '../istio/istio-config.js';

/** The socket load balancer as the agent runs it: the kernel side and the controller filling it. */
export interface ServiceLb {
	socketLb: SocketLb;
	controller: ServiceController;
	cgroup: string;
}

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
	/**
	 * ClusterIP Services translated at connect()/sendmsg() by Weir's socket load balancer,
	 * so policy and flows see the backend pod; false leaves them to kube-proxy.
	 */
	kubeProxyReplacement: boolean;
	/** cgroup v2 directory the socket load balancer attaches to; 'auto': this node's (src/agent/cgroup.ts) */
	cgroupRoot: string;
	/**
	 * Mesh opt-in honoured (docs/ztunnel.md): pods that opt in (namespace label
	 * weir.io/mesh=enabled …) have their TCP to meshed pods captured by the node's
	 * ztunnel. false: no pod is meshed on this node and the capture's routing is removed.
	 */
	mesh: boolean;
	/** the unix socket the node's ztunnel sends its connection records to, each a flow of this node; '' listens on none */
	ztunnelFlowSocket: string;
	/**
	 * The namespace whose PeerAuthentication without a selector applies to the whole mesh
	 * (Istio's meshConfig.rootNamespace; the ztunnel's default, weir-system).
	 */
	rootNamespace: string;
	/** the CNI server (socket, endpoint state, conf dir); none: endpoints come from elsewhere */
	cni?: CniConfig;
}

export const DEFAULT_AGENT_CONFIG: Omit<AgentConfig, 'nodeName'> = {
	pinRoot: DEFAULTS.pinRoot,
	observerHost: '0.0.0.0',
	observerPort: DEFAULTS.observerPort,
	flowBuffer: 8192,
	ctGcIntervalMs: 30_000,
	logLevel: 'info',
	kubeProxyReplacement: true,
	cgroupRoot: 'auto',
	mesh: true,
	ztunnelFlowSocket: DEFAULTS.ztunnelFlowSocket,
	rootNamespace: DEFAULT_ROOT_NAMESPACE,
};

export class Agent {
	private unsubscribe: (() => void) | undefined;
	private gcTimer: NodeJS.Timeout | undefined;
	private podCidrTimer: NodeJS.Timeout | undefined;

	constructor(
		readonly config: AgentConfig,
		readonly log: Logger,
		readonly datapath: Datapath,
		readonly watches: ClusterWatches,
		readonly controller: PolicyController,
		readonly flows: FlowRing,
		readonly flowIndex: FlowIndex,
		readonly http: FastifyInstance,
		readonly metrics: AgentMetrics,
		/** the datapath event stream's fatal error, read by the status */
		readonly events: { lastError: string | undefined },
		readonly mesh: NodeMesh,
		readonly cni?: CniService,
		readonly lb?: ServiceLb,
		/** the ztunnel's connection records (none when config.ztunnelFlowSocket is '') */
		readonly meshFlows?: MeshFlowSocket,
	) {}

	async start(): Promise<void> {
		const ctx = this.flowIndex.context();
		this.unsubscribe = this.datapath.subscribe(
			(ev) => {
				const flow = toFlow(ev, ctx);
				this.flows.add(flow);
				this.metrics.flow(flow);
			},
			(err) => {
				this.events.lastError = err.message;
				const cause = err.cause as { code?: string; errno?: number; op?: string } | undefined;
				this.log.error(
					{
						component: 'datapath',
						node: this.config.nodeName,
						pinRoot: this.config.pinRoot,
						code: err.code,
						errno: cause?.errno,
						errnoName: cause?.code,
						op: cause?.op,
						err: err.message,
					},
					'datapath event stream stopped: no flows until the agent restarts; /readyz reports not ready',
				);
			},
		);
		// The capture's routing before the first compile can mesh a pod.
		await this.mesh.start();
		this.watches.start();
		this.gcTimer = setInterval(() => {
			const removed = this.datapath.gcConntrack();
			if (removed) this.log.debug({ removed }, 'conntrack GC');
		}, this.config.ctGcIntervalMs);
		this.gcTimer.unref();
		// The CNI server (and the conflist, which tells the runtime to use Weir) come
		// after the datapath is loaded and stale endpoints are gone.
		await this.cni?.start();
		if (this.cni?.needsPodCidr) this.awaitPodCidr(this.cni);
		// Flows of the ztunnel's connections are worth no enforcement: a socket that cannot be made is logged, and the agent runs on.
		await this.meshFlows
			?.start()
			.catch((err: Error & { code?: string }) =>
				this.log.error(
					{ component: 'mesh-flows', socket: this.config.ztunnelFlowSocket, code: err.code, err: err.message },
					"cannot listen for the ztunnel's connection records: its connections are not flows on this node (is /var/run/weir writable?)",
				),
			);
		await this.http.listen({ host: this.config.observerHost, port: this.config.observerPort });
		this.log.info({ port: this.config.observerPort }, 'observer API and metrics listening');
	}

	/** Writes the conflist once this node's spec.podCIDR is in the watch cache. */
	private awaitPodCidr(cni: CniService): void {
		const tryOnce = (): boolean => {
			const node = this.watches.nodes.list().find((n) => n.metadata?.name === this.config.nodeName);
			const cidr = node?.spec?.podCIDRs?.find((c) => !c.includes(':')) ?? node?.spec?.podCIDR;
			if (!cidr) return false;
			cni.writeConflist(cidr);
			return true;
		};
		if (tryOnce()) return;
		this.log.info({ node: this.config.nodeName }, 'CNI configuration waits for the node PodCIDR');
		this.podCidrTimer = setInterval(() => {
			try {
				if (tryOnce()) clearInterval(this.podCidrTimer);
			} catch (err) {
				this.log.error({ err: (err as Error).message }, 'writing the CNI configuration failed');
			}
		}, 500);
		this.podCidrTimer.unref();
	}

	async stop(): Promise<void> {
		clearInterval(this.podCidrTimer);
		await this.cni?.stop();
		clearInterval(this.gcTimer);
		this.unsubscribe?.();
		this.controller.stop();
		this.lb?.controller.stop();
		await this.watches.stop();
		await this.mesh.settled();
		await this.meshFlows?.close();
		await this.http.close();
		// Maps and links stay pinned: enforcement and translation continue without the agent.
		this.lb?.socketLb.close();
		this.datapath.close();
	}
}

/**
 * Builds the agent. Local endpoints come from `endpoints` when given, else from the
 * CNI server's endpoint store (config.cni).
 */
export async function buildAgent(config: AgentConfig, endpoints?: EndpointSource, log: Logger = pino({ level: config.logLevel })): Promise<Agent> {
	ensureBpffs();
	const store = config.cni ? new EndpointStore(config.cni.stateFile) : undefined;
	const source: EndpointSource | undefined = endpoints ?? store;
	if (!source) throw new Error('buildAgent: no endpoint source (pass one, or configure the CNI server with config.cni)');
	const datapath = await Datapath.open({ pinRoot: config.pinRoot });
	const kc = new k8s.KubeConfig();
	if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
	else kc.loadFromCluster();

	const metrics = new AgentMetrics(datapath);
	// The watches call the controllers, which are built from them: declared first, assigned once below.
	// eslint-disable-next-line prefer-const
	let controller: PolicyController | undefined;
	// eslint-disable-next-line prefer-const
	let lb: ServiceLb | undefined;
	const watches = new ClusterWatches(kc, log.child({ component: 'watch' }), {
		policy: () => controller?.schedule(),
		services: () => lb?.controller.schedule(),
	});
	lb = config.kubeProxyReplacement ? await openServiceLb(config, watches, log) : await closeServiceLb(config, log);
	const flowIndex = new FlowIndex(
		config.nodeName,
		undefined,
		lb ? serviceLookups(lb.socketLb, lb.controller, () => source.list(), netnsCookie, { identityOf: (ip) => datapath.endpoint(ip)?.identity }) : undefined,
	);
	const mesh = new NodeMesh(
		config.mesh && datapath.config.capture,
		{ install: () => installCaptureRouting(), remove: () => removeCaptureRouting() },
		log.child({ component: 'mesh' }),
	);
	controller = new PolicyController({
		node: config.nodeName,
		snapshot: () => ({
			synced: watches.isSynced,
			pods: watches.pods.list(),
			namespaces: watches.namespaces.list(),
			policies: watches.policies.list(),
			nodes: watches.nodes.list(),
			peerAuthentications: watches.peerAuthentications.list(),
		}),
		endpoints: () => source.list(),
		maps: datapath,
		log: log.child({ component: 'policy' }),
		mesh: () => mesh.active,
		rootNamespace: config.rootNamespace,
		// Every applied run re-indexes what flows name: the pods and verdicts of that run.
		observer: {
			compiled: (seconds, stats, compiled) => {
				metrics.compiled(seconds, stats, compiled);
				mesh.applied();
				flowIndex.update(watches.pods.list(), controller!.verdictLookups());
			},
		},
	});
	source.onChange(() => controller!.schedule());

	// A pod wired by the CNI is born with its policy: the controller runs synchronously
	// inside ADD, so the endpoint entry it writes is the compiled one. Until the watches
	// have synced the agent cannot know the pod's labels nor the policies that select
	// it; the endpoint is then written fail-closed (reserved identity "init", both
	// directions isolated: nothing in or out but this node's own traffic, e.g. kubelet
	// probes) and the first run after sync replaces it. Same when the pod is not in
	// the watch cache yet. See docs/cni.md.
	const cniLog = log.child({ component: 'cni' });
	const admit = (ep: LocalEndpoint): void => {
		if (watches.isSynced && controller!.run() && datapath.endpointEntries().some((e) => e.ip === ep.ip)) return;
		datapath.setEndpoint(ep.ip, failClosedEntry(ep));
		cniLog.warn(
			{ namespace: ep.namespace, pod: ep.pod, ip: ep.ip, synced: watches.isSynced },
			'endpoint written fail-closed (identity init, isolated both ways) until its policy is known',
		);
	};
	const cni = config.cni ? CniService.create(config.cni, datapath, admit, cniLog, store ? { store } : {}) : undefined;

	const flows = new FlowRing(config.flowBuffer);
	const http = Fastify({ logger: false });
	await http.register(observeApi, { ring: flows });
	const events: { lastError: string | undefined } = { lastError: undefined };
	const sources: StatusSources = {
		node: config.nodeName,
		startedAt: new Date(),
		pinRoot: config.pinRoot,
		datapath,
		watches,
		controller,
		endpoints: source,
		events,
		mesh,
		...(lb ? { services: { cgroup: lb.cgroup, controller: lb.controller } } : {}),
	};
	await http.register(statusApi, { sources });
	http.get('/metrics', async (_req, reply) => {
		reply.header('content-type', metrics.registry.contentType);
		return metrics.registry.metrics();
	});
	http.get('/healthz', async () => ({ ok: true }));
	http.get('/readyz', async (_req, reply) => {
		const r = readiness(sources);
		reply.code(r.ready ? 200 : 503);
		return r;
	});
	const meshFlows = config.ztunnelFlowSocket
		? meshFlowSocket({ path: config.ztunnelFlowSocket, ctx: flowIndex.context(), flows, metrics, log: log.child({ component: 'mesh-flows' }) })
		: undefined;
	return new Agent(config, log, datapath, watches, controller, flows, flowIndex, http, metrics, events, mesh, cni, lb, meshFlows);
}

/**
 * kube-proxy-replacement on: the socket load balancer loaded over its pinned maps (a
 * restarted agent keeps every translation), attached to this node's cgroup, and the
 * controller that fills it from the Services and EndpointSlices watches.
 */
async function openServiceLb(config: AgentConfig, watches: ClusterWatches, log: Logger): Promise<ServiceLb> {
	const cgroup = resolveCgroupRoot(config.cgroupRoot);
	const socketLb = await SocketLb.open({ pinRoot: config.pinRoot, cgroupPath: cgroup });
	const controller = new ServiceController({
		node: config.nodeName,
		snapshot: () => ({
			synced: watches.services.isSynced && watches.endpointSlices.isSynced,
			services: watches.services.list(),
			slices: watches.endpointSlices.list(),
		}),
		maps: socketLb,
		log: log.child({ component: 'services' }),
	});
	log.info({ cgroup, pinRoot: config.pinRoot }, 'socket load balancer attached: ClusterIP Services are translated at connect()');
	return { socketLb, controller, cgroup };
}

/** kube-proxy-replacement off: a socket load balancer a previous configuration attached is taken off. */
async function closeServiceLb(config: AgentConfig, log: Logger): Promise<undefined> {
	if (!existsSync(join(config.pinRoot, 'cgroup-links'))) return undefined;
	const socketLb = await SocketLb.open({ pinRoot: config.pinRoot });
	const attached = socketLb.attachedCgroups();
	if (attached.length) {
		socketLb.detach();
		log.info({ cgroups: attached }, 'kube-proxy-replacement is off: socket load balancer detached; Services are left to kube-proxy');
	}
	socketLb.close();
	return undefined;
}
