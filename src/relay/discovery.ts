// Where the node agents are: the weir-agent pods of the DaemonSet (one per node) and
// the cluster's nodes, watched through the API server with supervised informers. The
// relay is told the current targets after every change; a node with no agent pod is
// listed as unavailable. The namespaces are watched for the UI's namespace picker.
import * as k8s from '@kubernetes/client-node';
import { SupervisedInformer, type WatchLogger } from '../cluster/informers.js';
import type { AgentTarget } from './transport.js';

export const AGENT_SELECTOR = { key: 'app.kubernetes.io/name', value: 'weir-agent' };

export interface Discovered {
	targets: AgentTarget[];
	/** nodes without an agent pod, and why */
	without: Map<string, string>;
}

/** Targets from the API's view (pure): the newest live agent pod per node. */
export function targetsFrom(pods: readonly k8s.V1Pod[], nodes: readonly k8s.V1Node[]): Discovered {
	const byNode = new Map<string, k8s.V1Pod>();
	for (const p of pods) {
		if (p.metadata?.labels?.[AGENT_SELECTOR.key] !== AGENT_SELECTOR.value) continue;
		if (p.metadata?.deletionTimestamp || p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
		const node = p.spec?.nodeName;
		if (!node) continue;
		const had = byNode.get(node);
		const created = (x: k8s.V1Pod): number => new Date(x.metadata?.creationTimestamp ?? 0).getTime();
		if (!had || created(p) > created(had)) byNode.set(node, p);
	}
	const targets: AgentTarget[] = [];
	for (const [node, p] of byNode) {
		const t: AgentTarget = { node, pod: { namespace: p.metadata?.namespace ?? '', name: p.metadata?.name ?? '' } };
		if (p.status?.podIP) t.address = p.status.podIP;
		targets.push(t);
	}
	const without = new Map<string, string>();
	for (const n of nodes) {
		const name = n.metadata?.name;
		if (name && !byNode.has(name)) without.set(name, 'no weir-agent pod on this node');
	}
	return { targets: targets.sort((a, b) => a.node.localeCompare(b.node)), without };
}

export class AgentDiscovery {
	private readonly pods: SupervisedInformer<k8s.V1Pod>;
	private readonly nodes: SupervisedInformer<k8s.V1Node>;
	private readonly namespaces: SupervisedInformer<k8s.V1Namespace>;

	constructor(kc: k8s.KubeConfig, namespace: string, log: WatchLogger, onTargets: (d: Discovered) => void, onNamespaces: (names: string[]) => void) {
		const core = kc.makeApiClient(k8s.CoreV1Api);
		const changed = (): void => {
			if (this.pods.isSynced && this.nodes.isSynced) onTargets(targetsFrom(this.pods.list(), this.nodes.list()));
		};
		this.pods = new SupervisedInformer(
			'weir-agent pods',
			kc,
			`/api/v1/namespaces/${namespace}/pods`,
			() => core.listNamespacedPod({ namespace }),
			log,
			changed,
		);
		this.nodes = new SupervisedInformer('nodes', kc, '/api/v1/nodes', () => core.listNode(), log, changed);
		this.namespaces = new SupervisedInformer(
			'namespaces',
			kc,
			'/api/v1/namespaces',
			() => core.listNamespace(),
			log,
			() =>
				onNamespaces(
					this.namespaces
						.list()
						.map((n) => n.metadata?.name ?? '')
						.filter(Boolean),
				),
		);
	}

	start(): void {
		for (const i of [this.pods, this.nodes, this.namespaces]) i.start();
	}

	async synced(): Promise<void> {
		await Promise.all([this.pods.synced, this.nodes.synced]);
	}

	async stop(): Promise<void> {
		await Promise.all([this.pods.stop(), this.nodes.stop(), this.namespaces.stop()]);
	}
}
