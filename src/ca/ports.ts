// What the CA needs from the Kubernetes API, as narrow ports (kube.ts implements them
// with @kubernetes/client-node; unit tests with fakes).

/** TokenReview's status, as the API server answers it. */
export interface TokenReviewStatus {
	authenticated?: boolean;
	audiences?: string[];
	error?: string;
	user?: { username?: string; uid?: string; extra?: Record<string, string[]> };
}

export interface PodSummary {
	namespace: string;
	name: string;
	uid: string;
	serviceAccount: string;
	nodeName: string;
	phase: string;
}

export interface CaCluster {
	/** Creates the Secret unless one of that name exists; true when this call created it. */
	createSecretIfAbsent(namespace: string, name: string, data: Record<string, string>): Promise<boolean>;
	/** The Secret's data (decoded), or undefined when it does not exist. */
	readSecret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
	/** Creates or replaces the ConfigMap. */
	publishConfigMap(namespace: string, name: string, data: Record<string, string>): Promise<void>;
	reviewToken(token: string, audiences: string[]): Promise<TokenReviewStatus>;
	/** The pods of `namespace` bound to `nodeName`. */
	podsOnNode(namespace: string, nodeName: string): Promise<PodSummary[]>;
	/** One pod by name, or undefined. */
	pod(namespace: string, name: string): Promise<PodSummary | undefined>;
}
