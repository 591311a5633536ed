// weir-controller's composition root: the relay (discovery through the API server, or
// nodes given on the command line), its API and the web UI on one fastify server; and,
// when it talks to the API server, the workload CA on its own HTTPS port and Istio's
// security CRDs, created when the cluster lacks them.
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
import { ensureCrds, KubeCrds, loadVendoredCrds, type CrdOutcome } from './crds.js';

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
	/** the vendored Istio CRDs to create where absent (ISTIO_CRDS_FILE); absent: none (static nodes, or --no-istio-crds) */
	istioCrdsFile?: string;
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
	/** What became of each Istio CRD once they are in place (never settles without them). */
	istioCrds: Promise<CrdOutcome[]>;
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

	// What needs the API server (the CA's root, the CRDs) retries with backoff until it
	// succeeds (RBAC not applied yet, API server away) or the controller stops; the relay
	// runs regardless.
	let stopping = false;
	const wakers = new Set<() => void>();
	const retrying = async (attempt: () => Promise<unknown>, failed: (err: unknown, retryInMs: number) => void): Promise<boolean> => {
		for (let failures = 1; !stopping; failures++) {
			try {
				await attempt();
				return true;
			} catch (err) {
				const retryInMs = backoffDelay(failures, { initialMs: 1000, maxMs: 30_000 }, Math.random);
				failed(err, retryInMs);
				await new Promise<void>((r) => {
					const done = (): void => {
						wakers.delete(done);
						r();
					};
					wakers.add(done);
					setTimeout(done, retryInMs).unref();
				});
			}
		}
		return false;
	};
	const errFields = (err: unknown, retryInMs: number): Record<string, unknown> => ({
		err: (err as Error).message,
		code: (err as { code?: unknown }).code,
		retryInMs,
	});

	const caLog = log.child({ component: 'ca' });
	let caServer: FastifyInstance | undefined;
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
		const ready = await retrying(
			() => ca.init(),
			(err, retryInMs) =>
				caLog.error(errFields(err, retryInMs), `the CA cannot load or create its root in ${cfg.namespace} (check its RBAC: deploy/base/ca.yaml)`),
		);
		if (!ready) return;
		caServer = await buildCaServer(ca, caLog, caDnsNames(cfg.namespace));
		const addr = await caServer.listen({ host: c.host, port: c.port });
		caLog.info({ addr, trustDomain: c.trustDomain, certTtlMs: c.certTtlMs, ztunnel: `${cfg.namespace}/${c.ztunnelServiceAccount}` }, 'CA listening');
		listening(addr);
	};
	let caTask: Promise<void> | undefined;

	const crdLog = log.child({ component: 'crds' });
	let crdsDone: (o: CrdOutcome[]) => void = () => {};
	const istioCrds = new Promise<CrdOutcome[]>((resolve) => (crdsDone = resolve));
	const createCrds = async (file: string, kc: k8s.KubeConfig): Promise<void> => {
		const vendored = loadVendoredCrds(file);
		const api = new KubeCrds(kc);
		let outcome: CrdOutcome[] = [];
		const done = await retrying(
			async () => (outcome = await ensureCrds(api, vendored, crdLog)),
			(err, retryInMs) =>
				crdLog.error(errFields(err, retryInMs), `cannot create Istio's security CRDs where absent (check the controller's RBAC: deploy/base/crds.yaml)`),
		);
		if (done) crdsDone(outcome);
	};
	let crdTask: Promise<void> | undefined;

	return {
		http,
		relay,
		caListening,
		istioCrds,
		async start() {
			if (cfg.ca && kc) {
				caTask = startCa(cfg.ca, kc).catch((err: unknown) => caLog.error({ err: (err as Error).message }, 'the CA stopped'));
			}
			if (cfg.istioCrdsFile && kc) {
				crdTask = createCrds(cfg.istioCrdsFile, kc).catch((err: unknown) => crdLog.error({ err: (err as Error).message }, `cannot read ${cfg.istioCrdsFile}`));
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
			for (const w of [...wakers]) w();
			await caTask;
			await crdTask;
			await caServer?.close();
			await discovery?.stop();
			relay.stop();
			await http.close();
		},
	};
}
