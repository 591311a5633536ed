// The cluster as a node agent sees it: one supervised informer per kind it reads.
// Pods, Namespaces, NetworkPolicies, Nodes and Istio's PeerAuthentications feed the
// policy controller and the flow index; Services and EndpointSlices feed the service
// load balancer. A change wakes only the consumer of its kind (a Service change costs
// no policy compile), except the change that completes the sync of every watch, which
// wakes both.
//
// PeerAuthentication's CRD may be absent (weir-controller creates it, but the agent
// must not depend on that): its watch counts for "synced" once its first attempt
// ended, listed or not. Not listed means none (no pod is STRICT); when the CRD appears
// the supervisor's retry lists it and a compile follows. Waiting for that first
// attempt keeps a restarted agent from compiling a STRICT pod PERMISSIVE just because
// the list was still on its way.
import * as k8s from '@kubernetes/client-node';
import { BackoffOptions, DEFAULT_BACKOFF, SupervisedInformer, WatchLogger } from './informers.js';

/** Istio's PeerAuthentication, cluster-wide (its v1, which the vendored CRD serves). */
export const PEER_AUTHENTICATIONS = { group: 'security.istio.io', version: 'v1', plural: 'peerauthentications' } as const;
export const PEER_AUTHENTICATIONS_PATH = `/apis/${PEER_AUTHENTICATIONS.group}/${PEER_AUTHENTICATIONS.version}/${PEER_AUTHENTICATIONS.plural}`;

/** Who is told of a change: the consumers of each group of kinds. */
export interface WatchListeners {
	/** pods, namespaces, NetworkPolicies, nodes, PeerAuthentications */
	policy(): void;
	/** Services, EndpointSlices */
	services(): void;
}

/** Every watch a node agent keeps, over one KubeConfig. */
export class ClusterWatches {
	readonly pods: SupervisedInformer<k8s.V1Pod>;
	readonly namespaces: SupervisedInformer<k8s.V1Namespace>;
	readonly policies: SupervisedInformer<k8s.V1NetworkPolicy>;
	readonly nodes: SupervisedInformer<k8s.V1Node>;
	readonly services: SupervisedInformer<k8s.V1Service>;
	readonly endpointSlices: SupervisedInformer<k8s.V1EndpointSlice>;
	/** may be absent (404): see above */
	readonly peerAuthentications: SupervisedInformer<k8s.KubernetesObject>;

	private allSynced = false;

	constructor(
		kc: k8s.KubeConfig,
		log: WatchLogger,
		listeners: WatchListeners,
		backoff: BackoffOptions = DEFAULT_BACKOFF,
		/** the backoff's cap while PeerAuthentication's CRD is absent */
		absentMaxMs?: number,
	) {
		const notify = (own: () => void) => (): void => {
			if (!this.allSynced && this.isSynced) {
				this.allSynced = true;
				listeners.policy();
				listeners.services();
				return;
			}
			own();
		};
		const onChange = notify(() => listeners.policy());
		const onServiceChange = notify(() => listeners.services());
		const core = kc.makeApiClient(k8s.CoreV1Api);
		const net = kc.makeApiClient(k8s.NetworkingV1Api);
		const disc = kc.makeApiClient(k8s.DiscoveryV1Api);
		this.pods = new SupervisedInformer('pods', kc, '/api/v1/pods', () => core.listPodForAllNamespaces(), log, onChange, backoff);
		this.namespaces = new SupervisedInformer('namespaces', kc, '/api/v1/namespaces', () => core.listNamespace(), log, onChange, backoff);
		this.policies = new SupervisedInformer(
			'networkpolicies',
			kc,
			'/apis/networking.k8s.io/v1/networkpolicies',
			() => net.listNetworkPolicyForAllNamespaces(),
			log,
			onChange,
			backoff,
		);
		this.nodes = new SupervisedInformer('nodes', kc, '/api/v1/nodes', () => core.listNode(), log, onChange, backoff);
		this.services = new SupervisedInformer('services', kc, '/api/v1/services', () => core.listServiceForAllNamespaces(), log, onServiceChange, backoff);
		this.endpointSlices = new SupervisedInformer(
			'endpointslices',
			kc,
			'/apis/discovery.k8s.io/v1/endpointslices',
			() => disc.listEndpointSliceForAllNamespaces(),
			log,
			onServiceChange,
			backoff,
		);
		const custom = kc.makeApiClient(k8s.CustomObjectsApi);
		this.peerAuthentications = new SupervisedInformer<k8s.KubernetesObject>(
			'peerauthentications',
			kc,
			PEER_AUTHENTICATIONS_PATH,
			() => custom.listClusterCustomObject({ ...PEER_AUTHENTICATIONS }) as Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>,
			log,
			onChange,
			backoff,
			{ mayBeAbsent: true, ...(absentMaxMs === undefined ? {} : { absentMaxMs }) },
		);
	}

	all(): Array<SupervisedInformer<k8s.KubernetesObject>> {
		return [...this.required(), this.peerAuthentications];
	}

	/** The watches that must have listed before anything is compiled. */
	private required(): Array<SupervisedInformer<k8s.KubernetesObject>> {
		return [this.pods, this.namespaces, this.policies, this.nodes, this.services, this.endpointSlices] as Array<SupervisedInformer<k8s.KubernetesObject>>;
	}

	start(): void {
		for (const i of this.all()) i.start();
	}

	async synced(): Promise<void> {
		await Promise.all([...this.required().map((i) => i.synced), this.peerAuthentications.settled]);
	}

	/** Every required watch listed, and PeerAuthentication's first attempt ended (listed, or absent). */
	get isSynced(): boolean {
		return this.required().every((i) => i.isSynced) && this.peerAuthentications.isSettled;
	}

	async stop(): Promise<void> {
		await Promise.all(this.all().map((i) => i.stop()));
	}
}
