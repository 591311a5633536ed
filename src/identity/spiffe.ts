// SPIFFE IDs of workloads: spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>,
// the shape Istio uses. Parsing is strict (SPIFFE ID spec plus Kubernetes name rules):
// one spelling per identity, so string comparison of formatted IDs is identity
// comparison.

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

export interface SpiffeId {
	trustDomain: string;
	namespace: string;
	serviceAccount: string;
}

export class SpiffeIdError extends Error {
	readonly code = 'WEIR_ERR_SPIFFE_ID';
	constructor(
		message: string,
		readonly input: string,
	) {
		super(message);
		this.name = 'SpiffeIdError';
	}
}

const MAX_ID = 2048; // SPIFFE: URIs of at most 2048 bytes
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** A trust domain as SPIFFE allows it: lowercase letters, digits, `.`, `-`, `_`. */
export function checkTrustDomain(td: string): string {
	if (!TRUST_DOMAIN.test(td)) {
		throw new SpiffeIdError(`trust domain "${td}" must be 1-255 characters of lowercase letters, digits, ".", "-" and "_"`, td);
	}
	return td;
}

function isDnsSubdomain(s: string): boolean {
	return s.length >= 1 && s.length <= 253 && s.split('.').every((l) => DNS_LABEL.test(l));
}

function checkNames(namespace: string, serviceAccount: string, input: string): void {
	if (!DNS_LABEL.test(namespace)) throw new SpiffeIdError(`namespace "${namespace}" is not a Kubernetes namespace name (RFC 1123 label)`, input);
	if (!isDnsSubdomain(serviceAccount)) {
		throw new SpiffeIdError(`service account "${serviceAccount}" is not a Kubernetes ServiceAccount name (RFC 1123 subdomain)`, input);
	}
}

/**
 * Parses `spiffe://<td>/ns/<ns>/sa/<sa>`; with `trustDomain`, also requires that one.
 * Rejects anything else: other schemes or case, ports, user info, query, fragment,
 * percent-encoding, empty or extra path segments, a trailing slash.
 */
export function parseSpiffeId(input: string, trustDomain?: string): SpiffeId {
	if (typeof input !== 'string' || input.length === 0) throw new SpiffeIdError('empty SPIFFE ID', String(input));
	if (input.length > MAX_ID) throw new SpiffeIdError(`SPIFFE ID longer than ${MAX_ID} characters`, input.slice(0, 64) + '…');
	if (!input.startsWith('spiffe://')) throw new SpiffeIdError(`"${input}" does not start with spiffe://`, input);
	const rest = input.slice('spiffe://'.length);
	const slash = rest.indexOf('/');
	if (slash < 0) throw new SpiffeIdError(`"${input}" has no path (expected /ns/<namespace>/sa/<serviceaccount>)`, input);
	const td = rest.slice(0, slash);
	if (!TRUST_DOMAIN.test(td)) {
		throw new SpiffeIdError(`"${input}": trust domain "${td}" must be lowercase letters, digits, ".", "-" and "_" (no port, no user info)`, input);
	}
	const segs = rest.slice(slash + 1).split('/');
	if (segs.length !== 4 || segs[0] !== 'ns' || segs[2] !== 'sa') {
		throw new SpiffeIdError(`"${input}": path must be exactly /ns/<namespace>/sa/<serviceaccount>`, input);
	}
	const [, namespace, , serviceAccount] = segs as [string, string, string, string];
	checkNames(namespace, serviceAccount, input);
	if (trustDomain !== undefined && td !== trustDomain) {
		throw new SpiffeIdError(`"${input}" is in trust domain "${td}", not "${trustDomain}"`, input);
	}
	return { trustDomain: td, namespace, serviceAccount };
}

export function formatSpiffeId(id: SpiffeId): string {
	const s = `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
	parseSpiffeId(s); // the same rules both ways
	return s;
}

export function spiffeIdFor(trustDomain: string, namespace: string, serviceAccount: string): SpiffeId {
	const id = { trustDomain: checkTrustDomain(trustDomain), namespace, serviceAccount };
	formatSpiffeId(id);
	return id;
}
