// weir-controller's composition root: the relay (discovery through the API server, or
// nodes given on the command line), its API and the web UI on one fastify server.
import * as k8s from '@kubernetes/client-node';
import fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { relayApi } from '../relay/api.js';
import { AgentDiscovery } from '../relay/discovery.js';
import { Relay } from '../relay/relay.js';
import { staticUi } from '../relay/static-ui.js';
import { DirectTransport, PodProxyTransport, type AgentTarget, type ObserverTransport } from '../relay/transport.js';
import { packageVersion } from '../shared/package.js';

export interface ControllerConfig {
	host: string;
	port: number;
	/** Weir's namespace (the weir-agent pods) */
	namespace: string;
	/** static nodes (name -> observer URL) instead of discovery */
	nodes: Map<string, string>;
	kubeconfig?: string;
	/** how agents are reached: at their pod IP, or through the API server's pod proxy */
	via: 'direct' | 'pod-proxy';
	agentPort: number;
	uiDir: string;
	historySize: number;
	maxFollowers: number;
	followQueue: number;
	mergeWindowMs: number;
	mergeCapacity: number;
	mapEdges: number;
}

export interface Controller {
	http: FastifyInstance;
	relay: Relay;
	start(): Promise<string>;
	stop(): Promise<void>;
}

export function loadKubeConfig(path?: string): k8s.KubeConfig {
	const kc = new k8s.KubeConfig();
	if (path) kc.loadFromFile(path);
	else kc.loadFromDefault();
	return kc;
}

/** `log`: the root logger; each part logs through a child with its component. */
export async function buildController(cfg: ControllerConfig, log: Logger): Promise<Controller> {
	const kc = cfg.nodes.size ? undefined : loadKubeConfig(cfg.kubeconfig);
	const transport: ObserverTransport = cfg.via === 'pod-proxy' && kc ? new PodProxyTransport(kc, cfg.agentPort) : new DirectTransport(cfg.agentPort);
	const relay = new Relay({
		transport,
		historySize: cfg.historySize,
		maxFollowers: cfg.maxFollowers,
		followQueue: cfg.followQueue,
		merge: { windowMs: cfg.mergeWindowMs, capacity: cfg.mergeCapacity },
		mapEdges: cfg.mapEdges,
		log: log.child({ component: 'relay' }),
	});
	const discovery = kc
		? new AgentDiscovery(
				kc,
				cfg.namespace,
				log.child({ component: 'discovery' }),
				(d) => relay.setTargets(d.targets, d.without),
				(names) => relay.setNamespaces(names),
			)
		: undefined;
	// Live follow streams never end by themselves: closing the server closes them.
	const http = fastify({ logger: false, forceCloseConnections: true });
	await http.register(relayApi, { relay, followQueue: cfg.followQueue, version: packageVersion() });
	await http.register(staticUi, { dir: cfg.uiDir });
	return {
		http,
		relay,
		async start() {
			relay.start();
			if (discovery) discovery.start();
			else relay.setTargets([...cfg.nodes].map(([node, url]): AgentTarget => ({ node, url })));
			const addr = await http.listen({ host: cfg.host, port: cfg.port });
			log.child({ component: 'controller' }).info({ addr, via: discovery ? cfg.via : 'static nodes', ui: cfg.uiDir }, 'relay listening');
			return addr;
		},
		async stop() {
			await discovery?.stop();
			relay.stop();
			await http.close();
		},
	};
}
