// weir-controller's composition root: the relay (discovery through the API server, or
// nodes given on the command line), its API and the web UI on one fastify server; and,
// when it talks to the API server, the workload CA on its own HTTPS port.
import * as k8s from '@kubernetes/client-node';
import fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { relayApi } from '../relay/api.js';
import { AgentDiscovery } from '../relay/discovery.js';
import { Relay } from '../relay/relay.js';
import { staticUi } from '../relay/static-ui.js';
import { DirectTransport, PodProxyTransport, type AgentTarget, type ObserverTransport } from '../relay/transport.js';
import { packageVersion } from '../shared/package.js';
import { WorkloadCa } from '../ca/ca.js';
import { KubeCaCluster } from '../ca/kube.js';
import { buildCaServer, caDnsNames } from '../ca/server.js';
import { backoffDelay } from '../identity/cert-manager.js';

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
	/** the workload CA; absent: no CA (static nodes, or --no-ca) */
	ca?: CaConfig;
}

export interface CaConfig {
	host: string;
	port: number;
	trustDomain: string;
	certTtlMs: number;
	ztunnelServiceAccount: string;
	audience: string;
}

export interface Controller {
	http: FastifyInstance;
	relay: Relay;
	/** The CA's address once it has its root and listens (never settles without a CA). */
	caListening: Promise<string>;
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

	// The CA needs its root from the API server before it can serve; until then (RBAC not
	// applied yet, API server away) it retries with backoff and the relay runs regardless.
	const caLog = log.child({ component: 'ca' });
	let caServer: FastifyInstance | undefined;
	let stopping = false;
	let wake: (() => void) | undefined;
	let listening: (addr: string) => void = () => {};
	const caListening = new Promise<string>((resolve) => (listening = resolve));
	const startCa = async (c: CaConfig, kc: k8s.KubeConfig): Promise<void> => {
		const ca = new WorkloadCa({
			cluster: new KubeCaCluster(kc),
			trustDomain: c.trustDomain,
			namespace: cfg.namespace,
			ztunnelServiceAccount: c.ztunnelServiceAccount,
			audience: c.audience,
			certTtlMs: c.certTtlMs,
			log: caLog,
		});
		for (let failures = 1; !stopping; failures++) {
			try {
				await ca.init();
				break;
			} catch (err) {
				const retryInMs = backoffDelay(failures, { initialMs: 1000, maxMs: 30_000 }, Math.random);
				caLog.error(
					{ err: (err as Error).message, code: (err as { code?: unknown }).code, retryInMs },
					`the CA cannot load or create its root in ${cfg.namespace} (check its RBAC: deploy/base/ca.yaml)`,
				);
				await new Promise<void>((r) => {
					wake = r;
					setTimeout(r, retryInMs).unref();
				});
			}
		}
		if (stopping) return;
		caServer = await buildCaServer(ca, caLog, caDnsNames(cfg.namespace));
		const addr = await caServer.listen({ host: c.host, port: c.port });
		caLog.info({ addr, trustDomain: c.trustDomain, certTtlMs: c.certTtlMs, ztunnel: `${cfg.namespace}/${c.ztunnelServiceAccount}` }, 'CA listening');
		listening(addr);
	};
	let caTask: Promise<void> | undefined;

	return {
		http,
		relay,
		caListening,
		async start() {
			if (cfg.ca && kc) {
				caTask = startCa(cfg.ca, kc).catch((err: unknown) => caLog.error({ err: (err as Error).message }, 'the CA stopped'));
			}
			relay.start();
			if (discovery) discovery.start();
			else relay.setTargets([...cfg.nodes].map(([node, url]): AgentTarget => ({ node, url })));
			const addr = await http.listen({ host: cfg.host, port: cfg.port });
			log.child({ component: 'controller' }).info({ addr, via: discovery ? cfg.via : 'static nodes', ui: cfg.uiDir }, 'relay listening');
			return addr;
		},
		async stop() {
			stopping = true;
			wake?.();
			await caTask;
			await caServer?.close();
			await discovery?.stop();
			relay.stop();
			await http.close();
		},
	};
}
