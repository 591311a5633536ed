// The CA's ports over the real API server (@kubernetes/client-node). Least privilege
// (deploy/base/controller.yaml): create TokenReviews; get and create Secrets, create
// and update ConfigMaps in Weir's namespace; list pods.
import * as k8s from '@kubernetes/client-node';
import type { CaCluster, PodSummary, TokenReviewStatus } from './ports.js';

function status(err: unknown): number | undefined {
	const code = (err as { code?: unknown }).code;
	return typeof code === 'number' ? code : undefined;
}

function summary(p: k8s.V1Pod): PodSummary {
	return {
		namespace: p.metadata?.namespace ?? '',
		name: p.metadata?.name ?? '',
		uid: p.metadata?.uid ?? '',
		serviceAccount: p.spec?.serviceAccountName || 'default',
		nodeName: p.spec?.nodeName ?? '',
		phase: p.status?.phase ?? 'Pending',
	};
}

export class KubeCaCluster implements CaCluster {
	private readonly core: k8s.CoreV1Api;
	private readonly authn: k8s.AuthenticationV1Api;

	constructor(kc: k8s.KubeConfig) {
		this.core = kc.makeApiClient(k8s.CoreV1Api);
		this.authn = kc.makeApiClient(k8s.AuthenticationV1Api);
	}

	async createSecretIfAbsent(namespace: string, name: string, data: Record<string, string>): Promise<boolean> {
		const body: k8s.V1Secret = {
			metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'weir' } },
			type: 'Opaque',
			data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
		};
		try {
			await this.core.createNamespacedSecret({ namespace, body });
			return true;
		} catch (err) {
			if (status(err) === 409) return false;
			throw err;
		}
	}

	async readSecret(namespace: string, name: string): Promise<Record<string, string> | undefined> {
		try {
			const s = await this.core.readNamespacedSecret({ namespace, name });
			return Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
		} catch (err) {
			if (status(err) === 404) return undefined;
			throw err;
		}
	}

	async publishConfigMap(namespace: string, name: string, data: Record<string, string>): Promise<void> {
		const body: k8s.V1ConfigMap = { metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'weir' } }, data };
		try {
			await this.core.createNamespacedConfigMap({ namespace, body });
		} catch (err) {
			if (status(err) !== 409) throw err;
			// An unconditional update (no resourceVersion): the bundle is the root's, whoever wrote it last.
			await this.core.replaceNamespacedConfigMap({ namespace, name, body });
		}
	}

	async reviewToken(token: string, audiences: string[]): Promise<TokenReviewStatus> {
		const r = await this.authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } });
		return (r.status ?? {}) as TokenReviewStatus;
	}

	async podsOnNode(namespace: string, nodeName: string): Promise<PodSummary[]> {
		const list = await this.core.listNamespacedPod({ namespace, fieldSelector: `spec.nodeName=${nodeName}` });
		return list.items.map(summary);
	}

	async pod(namespace: string, name: string): Promise<PodSummary | undefined> {
		const list = await this.core.listNamespacedPod({ namespace, fieldSelector: `metadata.name=${name}` });
		const p = list.items[0];
		return p ? summary(p) : undefined;
	}
}
