// weir-ztunnel's composition root: the node proxy built from its configuration. The
// watches (pods, namespaces, nodes) rebuild the workload state; the state names the
// identities whose certificates the node needs; the outbound capture listener (15001)
// tunnels over the HBONE pool; the HBONE server (15008) delivers with the client pod's
// address; metrics on 15020 and readiness on 15021 live on their own server, off the
// data path. Every proxied connection is counted (metrics) and reported to the node's
// agent as a flow record (flows.ts).
import { readFileSync } from 'node:fs';
import * as k8s from '@kubernetes/client-node';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { SupervisedInformer } from '../cluster/informers.js';
import { podMeshMembership } from '../cluster/objects.js';
import { HttpsCaClient, type CaClient } from '../identity/ca-client.js';
import { CertificateManager } from '../identity/cert-manager.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import { CaptureListener, connectTransparent } from './capture.js';
import { PORTS } from './config.js';
import { ZtunnelMetrics } from './metrics.js';
import { FlowReporter } from './flows.js';
import { fanOut, type ConnectionObserver } from './proxy/connections.js';
import { DEFAULTS } from '../shared/defaults.js';
import { drain } from './drain.js';
import { InboundServer, type Authorize, type AuthzInput, type AuthzVerdict, type Deliver, type InboundLimits } from './proxy/inbound.js';
import { OutboundProxy } from './proxy/outbound.js';
import { HbonePool } from './proxy/pool.js';
import { buildState, StateSnapshot, type Membership } from './state.js';
import { compileAuthorizationPolicies, evaluate, type CompiledAuthorizationPolicies } from './authz.js';
import { DEFAULT_ROOT_NAMESPACE } from '../istio/istio-config.js';

export interface ZtunnelConfig {
	nodeName: string;
	trustDomain: string;
	/** kubeconfig path; in-cluster config when undefined */
	kubeconfig?: string;
	/** the CA endpoint, e.g. https://weir-ca.weir-system.svc:15012 */
	caUrl: string;
	/** PEM file of the trust bundle (the weir-trust-bundle ConfigMap's ca.crt, mounted) */
	trustBundleFile: string;
	/** the projected ServiceAccount token (audience weir-ca) */
	tokenFile: string;
	/** TLS name of the CA when caUrl is an address */
	caServerName?: string;
	/** this node's address: HBONE connections leave from it; the inbound check compares it */
	nodeAddress?: string;
	ports: { outbound: number; hbone: number; metrics: number; readiness: number };
	logLevel: string;
	/** AuthorizationPolicies here apply to the whole mesh (Istio's istio-system) */
	rootNamespace?: string;
	/** the node agent's socket for connection records (docs/ztunnel.md, "Flows"); '' sends none */
	flowSocket: string;
	/** the HBONE server's timeouts and reset budget (DEFAULT_INBOUND_LIMITS) */
	inboundLimits?: Partial<InboundLimits>;
}

export const DEFAULT_ZTUNNEL_CONFIG = {
	trustDomain: 'cluster.local',
	caUrl: 'https://weir-ca.weir-system.svc:15012',
	trustBundleFile: '/var/run/weir/trust-bundle/ca.crt',
	tokenFile: '/var/run/secrets/weir-ca/token',
	ports: { outbound: PORTS.outbound, hbone: PORTS.hbone, metrics: PORTS.metrics, readiness: PORTS.readiness },
	logLevel: 'info',
	flowSocket: DEFAULTS.ztunnelFlowSocket,
} as const;

/** The ztunnel's reading of mesh membership: the agent's rule (src/shared/mesh.ts). */
export const membership: Membership = (pod, ns) => podMeshMembership(pod, ns).meshed;

export interface ZtunnelParts {
	/** where certificates come from (the HTTPS CA client unless a test passes another) */
	ca?: CaClient;
	authorize?: Authorize;
	deliver?: Deliver;
}

export class Ztunnel {
	private state: StateSnapshot = StateSnapshot.empty;
	private rebuild: NodeJS.Immediate | undefined;
	private capture: CaptureListener | undefined;
	private readonly informers: SupervisedInformer<k8s.KubernetesObject>[];
	readonly pods: SupervisedInformer<k8s.V1Pod>;
	readonly namespaces: SupervisedInformer<k8s.V1Namespace>;
	readonly nodes: SupervisedInformer<k8s.V1Node>;
	readonly authzPolicies: SupervisedInformer<k8s.KubernetesObject>;
	private authz: CompiledAuthorizationPolicies | undefined;
	readonly certs: CertificateManager;
	readonly metrics = new ZtunnelMetrics();
	/** connection records to the node agent, which makes them flows (none when config.flowSocket is '') */
	readonly flows: FlowReporter | undefined;
	/** what the proxy tells about every connection: the metrics and the flow records */
	readonly observer: ConnectionObserver;
	readonly pool: HbonePool;
	readonly inbound: InboundServer;
	readonly outbound: OutboundProxy;
	readonly admin: FastifyInstance;
	/** readiness alone on its own port (Istio's 15021), so a probe never queues behind a scrape */
	readonly ready: FastifyInstance;

	constructor(
		readonly config: ZtunnelConfig,
		readonly log: Logger,
		parts: ZtunnelParts = {},
	) {
		const kc = new k8s.KubeConfig();
		if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
		else kc.loadFromCluster();
		const core = kc.makeApiClient(k8s.CoreV1Api);
		const wlog = log.child({ component: 'watch' });
		const changed = (): void => this.scheduleRebuild();
		this.pods = new SupervisedInformer('pods', kc, '/api/v1/pods', () => core.listPodForAllNamespaces(), wlog, changed);
		this.namespaces = new SupervisedInformer('namespaces', kc, '/api/v1/namespaces', () => core.listNamespace(), wlog, changed);
		this.nodes = new SupervisedInformer('nodes', kc, '/api/v1/nodes', () => core.listNode(), wlog, changed);
		// Istio's AuthorizationPolicy (its CRD is created by weir-controller where absent).
		const custom = kc.makeApiClient(k8s.CustomObjectsApi);
		this.authzPolicies = new SupervisedInformer<k8s.KubernetesObject>(
			'authorizationpolicies',
			kc,
			'/apis/security.istio.io/v1/authorizationpolicies',
			() =>
				custom.listClusterCustomObject({ group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies' }) as Promise<
					k8s.KubernetesListObject<k8s.KubernetesObject>
				>,
			wlog,
			() => this.recompileAuthz(),
		);
		this.informers = [this.pods, this.namespaces, this.nodes, this.authzPolicies] as SupervisedInformer<k8s.KubernetesObject>[];

		const ca =
			parts.ca ??
			new HttpsCaClient({
				url: config.caUrl,
				ca: readFileSync(config.trustBundleFile, 'utf8'),
				tokenPath: config.tokenFile,
				...(config.caServerName ? { servername: config.caServerName } : {}),
			});
		this.certs = new CertificateManager({ ca, log: log.child({ component: 'certificates' }) });
		if (config.flowSocket) {
			this.flows = new FlowReporter({ socketPath: config.flowSocket, node: config.nodeName, log, registry: this.metrics.registry });
		}
		this.observer = this.flows ? fanOut(this.metrics, this.flows) : this.metrics;
		this.pool = new HbonePool({
			trustDomain: config.trustDomain,
			...(config.nodeAddress ? { localAddress: config.nodeAddress } : {}),
			onConnection: (e) => (e === 'open' ? this.metrics.hboneConnections.inc() : this.metrics.hboneConnections.dec()),
		});
		const state = (): StateSnapshot => this.state;
		this.inbound = new InboundServer({
			node: config.nodeName,
			trustDomain: config.trustDomain,
			state,
			certs: this.certs,
			authorize: parts.authorize ?? ((i) => this.authorize(i)),
			deliver: parts.deliver ?? ((source, destination) => connectTransparent({ source, destination, timeoutMs: 5_000 })),
			observer: this.observer,
			events: this.metrics,
			log: log.child({ component: 'inbound' }),
			localAddresses: () => (config.nodeAddress ? [config.nodeAddress] : []),
			...(config.inboundLimits ? { limits: config.inboundLimits } : {}),
		});
		this.outbound = new OutboundProxy({
			node: config.nodeName,
			state,
			certs: this.certs,
			pool: this.pool,
			observer: this.observer,
			log: log.child({ component: 'outbound' }),
			hbonePort: config.ports.hbone,
		});
		this.admin = Fastify({ logger: false });
		this.admin.get('/metrics', async (_req, reply) => {
			reply.header('content-type', this.metrics.registry.contentType);
			return this.metrics.registry.metrics();
		});
		this.ready = Fastify({ logger: false });
		// Liveness: the event loop answers (nothing else: a ztunnel waiting for the API server is alive).
		this.ready.get('/healthz', async () => ({ ok: true }));
		this.ready.get('/healthz/ready', async (_req, reply) => {
			const r = this.readiness();
			reply.code(r.ready ? 200 : 503);
			return r;
		});
		this.admin.get('/status', async () => ({
			...this.readiness(),
			pool: this.pool.stats(),
			...(this.flows ? { flowRecords: { socket: config.flowSocket, connected: this.flows.isConnected, queued: this.flows.queued, ...this.flows.stats } } : {}),
			certificates: this.certs.identities().map((i) => this.certs.state(i)),
		}));
	}

	/**
	 * L4 authorization at the destination: Istio's AuthorizationPolicy semantics
	 * (src/ztunnel/authz.ts). Until the policies are listed once, nothing is admitted: a
	 * policy that exists but is not known yet must not be skipped.
	 */
	private authorize(i: AuthzInput): AuthzVerdict {
		if (!this.authz) return { allowed: false, reason: 'the AuthorizationPolicies are not listed yet (is the security.istio.io CRD installed?)' };
		const d = evaluate(this.authz, {
			source: { ip: i.source.ip, ...(i.source.identity ? { identity: i.source.identity } : {}) },
			destination: {
				namespace: i.destination.workload.namespace,
				labels: i.destination.workload.labels,
				ip: i.destination.workload.ip,
				port: i.destination.port,
			},
		});
		return { allowed: d.allowed, reason: d.reason, ...(d.policy ? { policy: d.policy } : {}) };
	}

	private recompileAuthz(): void {
		if (!this.authzPolicies.isSynced) return;
		const compiled = compileAuthorizationPolicies(this.authzPolicies.list(), {
			rootNamespace: this.config.rootNamespace ?? DEFAULT_ROOT_NAMESPACE,
			trustDomain: this.config.trustDomain,
		});
		const seen = new Set(this.authz?.problems.map((p) => `${p.policy}\0${p.message}`));
		for (const p of compiled.problems) {
			if (!seen.has(`${p.policy}\0${p.message}`)) this.log.warn({ component: 'authz', policy: p.policy }, `AuthorizationPolicy: ${p.message}`);
		}
		this.authz = compiled;
	}

	/** Ready once every watch listed and both listeners are open (certificates may still be pending). */
	readiness(): { ready: boolean; watches: Record<string, boolean>; listening: boolean; workloads: number; identities: number } {
		const watches = Object.fromEntries(this.informers.map((i) => [i.name, i.isSynced]));
		const listening = this.capture !== undefined && this.inbound.server.listening;
		return {
			ready: listening && Object.values(watches).every(Boolean),
			watches,
			listening,
			workloads: this.state.size,
			identities: this.certs.identities().length,
		};
	}

	/** The current workload state (tests, status). */
	snapshot(): StateSnapshot {
		return this.state;
	}

	async start(): Promise<void> {
		this.flows?.start();
		for (const i of this.informers) i.start();
		await this.inbound.listen(this.config.ports.hbone);
		this.capture = await CaptureListener.open((c) => void this.outbound.handle(c), { port: this.config.ports.outbound });
		await this.admin.listen({ host: '0.0.0.0', port: this.config.ports.metrics });
		await this.ready.listen({ host: '0.0.0.0', port: this.config.ports.readiness });
		this.log.info({ ports: this.config.ports, node: this.config.nodeName }, 'ztunnel listening');
	}

	private scheduleRebuild(): void {
		if (this.rebuild) return;
		this.rebuild = setImmediate(() => {
			this.rebuild = undefined;
			this.state = buildState({ pods: this.pods.list(), namespaces: this.namespaces.list(), nodes: this.nodes.list() }, this.config.trustDomain, membership);
			// One certificate per ServiceAccount with a meshed pod on this node.
			const ids = new Set(
				this.state
					.onNode(this.config.nodeName)
					.filter((w) => w.meshed)
					.map((w) => w.identity),
			);
			this.certs.setIdentities([...ids].map((i) => parseSpiffeId(i, this.config.trustDomain)));
		});
	}

	/**
	 * Stops the node proxy. With `drainMs` (SIGTERM) it drains first: the capture
	 * listener and the HBONE server stop accepting (readiness turns false), GOAWAY goes
	 * out on every HBONE session both ways, and the connections already carried go on
	 * for up to `drainMs` before they are ended (src/ztunnel/drain.ts).
	 */
	async stop(o: { drainMs?: number } = {}): Promise<void> {
		clearImmediate(this.rebuild);
		// (resolves once the captured connections are gone: their tunnels end in the drain)
		const captureClosed = this.capture?.close();
		await drain([this.inbound, this.pool], o.drainMs ?? 0, this.log.child({ component: 'drain' }));
		await captureClosed;
		this.certs.stop();
		for (const i of this.informers) await i.stop();
		await this.admin.close();
		await this.ready.close();
		// Last: the connections the listeners ended above are reported first (as far as the agent takes them now).
		this.flows?.close();
	}
}
