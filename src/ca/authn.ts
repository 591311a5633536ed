// Who is asking (pure): a TokenReview status turned into the calling ztunnel — a
// ServiceAccount token for the right audience, of the ztunnel's ServiceAccount, bound
// to a pod (so that the node it runs on is known).
import { CaError } from './errors.js';
import type { TokenReviewStatus } from './ports.js';

export const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
export const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
export const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';

export interface Caller {
	namespace: string;
	serviceAccount: string;
	podName: string;
	podUid: string;
	/** from the token's node binding, when the API server put one in it */
	nodeName?: string;
}

function one(extra: Record<string, string[]> | undefined, key: string): string | undefined {
	const v = extra?.[key];
	return v && v.length === 1 && v[0] ? v[0] : undefined;
}

export function callerFromReview(status: TokenReviewStatus, audience: string, expected: { namespace: string; serviceAccount: string }): Caller {
	if (!status.authenticated) {
		throw new CaError(
			'WEIR_ERR_CA_TOKEN_INVALID',
			401,
			`the ServiceAccount token was not authenticated by the API server (${status.error || 'invalid or expired'})`,
		);
	}
	if (!(status.audiences ?? []).includes(audience)) {
		throw new CaError('WEIR_ERR_CA_TOKEN_INVALID', 401, `the ServiceAccount token is not for audience "${audience}" (project it with that audience)`);
	}
	const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '');
	const want = `${expected.namespace}/${expected.serviceAccount}`;
	if (!m)
		throw new CaError(
			'WEIR_ERR_CA_WRONG_SERVICE_ACCOUNT',
			403,
			`the token is ${status.user?.username ?? 'nobody'}'s, not a ServiceAccount's; only ${want} may ask for certificates`,
		);
	const [, namespace, serviceAccount] = m as unknown as [string, string, string];
	if (namespace !== expected.namespace || serviceAccount !== expected.serviceAccount) {
		throw new CaError(
			'WEIR_ERR_CA_WRONG_SERVICE_ACCOUNT',
			403,
			`the token is ServiceAccount ${namespace}/${serviceAccount}'s; only ${want} (the node ztunnel) may ask for certificates`,
		);
	}
	const podName = one(status.user?.extra, EXTRA_POD_NAME);
	const podUid = one(status.user?.extra, EXTRA_POD_UID);
	if (!podName || !podUid) {
		throw new CaError(
			'WEIR_ERR_CA_TOKEN_NOT_POD_BOUND',
			403,
			'the token is not bound to a pod, so its node is unknown (use a projected ServiceAccount token of the ztunnel pod)',
		);
	}
	const nodeName = one(status.user?.extra, EXTRA_NODE_NAME);
	return { namespace, serviceAccount, podName, podUid, ...(nodeName ? { nodeName } : {}) };
}
