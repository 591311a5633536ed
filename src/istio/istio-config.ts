// Reading Istio's security.istio.io objects (AuthorizationPolicy, PeerAuthentication) as
// the API server returns them, for the pure compilers beside this file: the object's
// identity and age, its spec, its workload selector. Nothing here throws on bad input:
// what cannot be read is returned as a problem naming the object.

/** The API group of both kinds; v1 and v1beta1 have the same schema. */
export const ISTIO_SECURITY_GROUP = 'security.istio.io';
export const ISTIO_SECURITY_VERSIONS: readonly string[] = ['v1', 'v1beta1'];

/**
 * The namespace whose policies apply to the whole mesh (Istio's istio-system; Weir's own
 * namespace by default). Configurable, like Istio's meshConfig.rootNamespace.
 */
export const DEFAULT_ROOT_NAMESPACE = 'weir-system';

/** Something about one object that the compiler could not take as written, and what it did instead. */
export interface PolicyProblem {
	/** 'namespace/name', or '#<index>' for an object without both */
	policy: string;
	message: string;
}

export interface IstioObject {
	namespace: string;
	name: string;
	/** 'namespace/name' */
	key: string;
	/** metadata.creationTimestamp in ms, or undefined (then it counts as the newest) */
	created: number | undefined;
	/** the spec as found (undefined when absent) */
	spec: unknown;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
	return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function timestamp(v: unknown): number | undefined {
	if (v instanceof Date) return Number.isNaN(v.getTime()) ? undefined : v.getTime();
	if (typeof v !== 'string') return undefined;
	const t = Date.parse(v);
	return Number.isNaN(t) ? undefined : t;
}

/**
 * The object's identity if it is a `kind` of security.istio.io/v1 or v1beta1 with a name
 * and a namespace; otherwise a problem (such an object cannot be scoped, so it is ignored).
 */
export function readIstioObject(obj: unknown, kind: string, index: number): { object: IstioObject } | { problem: PolicyProblem } {
	const meta = isRecord(obj) && isRecord(obj['metadata']) ? obj['metadata'] : undefined;
	const name = typeof meta?.['name'] === 'string' && meta['name'] ? meta['name'] : undefined;
	const namespace = typeof meta?.['namespace'] === 'string' && meta['namespace'] ? meta['namespace'] : undefined;
	const at = name && namespace ? `${namespace}/${name}` : `#${index}`;
	const problem = (message: string): { problem: PolicyProblem } => ({ problem: { policy: at, message: `${message}; ignored` } });
	if (!isRecord(obj)) return problem(`not an object`);
	const apiVersion = obj['apiVersion'];
	const allowed = ISTIO_SECURITY_VERSIONS.map((v) => `${ISTIO_SECURITY_GROUP}/${v}`);
	if (typeof apiVersion !== 'string' || !allowed.includes(apiVersion)) {
		return problem(`apiVersion ${JSON.stringify(apiVersion)} is not one of ${allowed.join(', ')}`);
	}
	if (obj['kind'] !== kind) return problem(`kind ${JSON.stringify(obj['kind'])} is not ${kind}`);
	if (!name || !namespace) return problem(`metadata.name and metadata.namespace are required`);
	return { object: { namespace, name, key: at, created: timestamp(meta?.['creationTimestamp']), spec: obj['spec'] } };
}

/**
 * `spec.selector` (Istio's WorkloadSelector: matchLabels only). Undefined, or an empty
 * matchLabels, selects the whole namespace (returned as undefined); a string is what is
 * wrong with it.
 */
export function readSelector(v: unknown): { labels: ReadonlyArray<readonly [string, string]> | undefined } | { error: string } {
	if (v === undefined || v === null) return { labels: undefined };
	if (!isRecord(v)) return { error: 'spec.selector is not an object' };
	for (const k of Object.keys(v)) if (k !== 'matchLabels') return { error: `spec.selector.${k} is not supported (only matchLabels)` };
	const ml = v['matchLabels'];
	if (ml === undefined || ml === null) return { labels: undefined };
	if (!isRecord(ml)) return { error: 'spec.selector.matchLabels is not a map' };
	const labels: Array<readonly [string, string]> = [];
	for (const [k, val] of Object.entries(ml)) {
		if (typeof val !== 'string') return { error: `spec.selector.matchLabels.${k} is not a string` };
		labels.push([k, val]);
	}
	return { labels: labels.length ? labels : undefined };
}

/** True when every label of the selector is on the workload. */
export function selects(selector: ReadonlyArray<readonly [string, string]>, labels: Readonly<Record<string, string>>): boolean {
	for (const [k, v] of selector) if (labels[k] !== v) return false;
	return true;
}

/** Oldest first, as Istio resolves conflicts (same age: by namespace/name). */
export function oldestFirst(a: IstioObject, b: IstioObject): number {
	const ta = a.created ?? Infinity;
	const tb = b.created ?? Infinity;
	if (ta !== tb) return ta < tb ? -1 : 1;
	return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}
