// The node ztunnel's L4 authorization (issue 11, item 5): Istio's AuthorizationPolicy
// (security.istio.io v1 and v1beta1), compiled once from the objects as the API server
// returns them, then evaluated per connection by a pure function of the compiled form
// and the connection. No I/O.
//
// Istio's semantics (docs/ztunnel.md, "Authorization"):
// - scope: a policy in the root namespace applies to the whole mesh (with a selector, to
//   the matching workloads of every namespace); elsewhere to the workloads of its
//   namespace that its selector matches (no selector: all of them);
// - DENY policies first: any matching rule denies; then, if any ALLOW policy applies to
//   the workload, a rule of one of them must match, else the connection is denied; with
//   no ALLOW policy, it is allowed;
// - a policy with no rules matches nothing (as ALLOW it denies everything); a rule {}
//   matches everything; within a rule from, to and each `when` must all hold, any entry
//   of a from or to; within an entry every field, any value of a field, no value of a
//   not-field;
// - principals and namespaces come from the peer's SPIFFE identity: a plaintext
//   connection has neither, so no principals/namespaces value matches it (and every
//   notPrincipals/notNamespaces does, as in Istio's ztunnel).
//
// What this ztunnel cannot check — HTTP attributes (methods, paths, hosts,
// requestPrincipals, remoteIpBlocks, `when` keys outside the L4 set), fields it does not
// know, values that do not parse — never widens access, the rule of Istio's ztunnel: in
// an ALLOW policy the rule is dropped (it admits nothing); in a DENY policy the rule is
// enforced without those parts (it denies more than written). Each case is a problem.
import { parseSpiffeId } from '../identity/spiffe.js';
import { cidrContains, ipv4ToInt, isIpv4, parseCidr4 } from '../shared/ipv4.js';
import { isRecord, readIstioObject, readSelector, selects, type IstioObject, type PolicyProblem } from '../istio/istio-config.js';

export type { PolicyProblem } from '../istio/istio-config.js';
export { DEFAULT_ROOT_NAMESPACE } from '../istio/istio-config.js';

/** One connection, as the destination ztunnel knows it once the peer is authenticated. */
export interface AuthzRequest {
	source: {
		/** the peer's SPIFFE ID ('spiffe://cluster.local/ns/a/sa/b'); undefined for plaintext */
		identity?: string;
		ip: string;
	};
	destination: {
		namespace: string;
		labels: Readonly<Record<string, string>>;
		ip: string;
		port: number;
	};
}

export interface AuthzDecision {
	allowed: boolean;
	/**
	 * 'namespace/name' of the policy that decided: the DENY policy that matched, the ALLOW
	 * policy whose rule admitted, or (denied for want of a matching ALLOW rule) the first
	 * ALLOW policy that applies, as a NetworkPolicy flow names the policy that isolated.
	 */
	policy?: string;
	/** how that policy was enforced (a CUSTOM policy is enforced as DENY) */
	action?: 'ALLOW' | 'DENY';
	/** the index in spec.rules of the rule that matched */
	rule?: number;
	/** one sentence for the operator */
	reason: string;
}

export interface AuthzOptions {
	/** the namespace whose policies apply to every workload (DEFAULT_ROOT_NAMESPACE) */
	rootNamespace: string;
	/** the mesh's trust domain: a principal written with cluster.local names it (Istio's rule) */
	trustDomain: string;
}

export type PolicyAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

/** A connection's attributes, computed once per evaluation. */
export interface ConnectionAttributes {
	srcIp: number;
	dstIp: number;
	port: number;
	/** the identity without 'spiffe://' ('cluster.local/ns/a/sa/b'); undefined for plaintext */
	principal: string | undefined;
	namespace: string | undefined;
	serviceAccount: string | undefined;
}

/** One compiled field test. */
export type Test = (a: ConnectionAttributes) => boolean;

export interface CompiledRule {
	/** the rule's index in spec.rules */
	index: number;
	/** false: an ALLOW rule dropped because part of it cannot be enforced; it never matches */
	enforced: boolean;
	/** what of the rule is not checked, e.g. 'to[0].operation.methods (HTTP)' */
	unenforced: readonly string[];
	/** from, to and each condition of when (all must hold), each an OR of ANDs of field tests */
	readonly clauses: ReadonlyArray<ReadonlyArray<readonly Test[]>>;
}

export interface CompiledPolicy {
	key: string;
	namespace: string;
	name: string;
	/** spec.action as written */
	action: PolicyAction;
	/** how it is enforced: CUSTOM as DENY, AUDIT not at all */
	effect: 'ALLOW' | 'DENY' | 'NONE';
	/** 'mesh': in the root namespace */
	scope: 'mesh' | 'namespace';
	/** matchLabels; undefined: every workload of the scope */
	selector: ReadonlyArray<readonly [string, string]> | undefined;
	rules: readonly CompiledRule[];
	/** set when the policy cannot be read: it then denies every connection in its scope */
	broken?: string;
}

export interface CompiledAuthorizationPolicies {
	rootNamespace: string;
	trustDomain: string;
	/** every compiled policy, by namespace/name */
	policies: readonly CompiledPolicy[];
	problems: readonly PolicyProblem[];
	/** the root namespace's policies, and each other namespace's (the per-connection index) */
	readonly mesh: readonly CompiledPolicy[];
	readonly byNamespace: ReadonlyMap<string, readonly CompiledPolicy[]>;
}

const ACTIONS: readonly PolicyAction[] = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'];
const SPEC_FIELDS = new Set(['selector', 'action', 'rules', 'provider', 'targetRef', 'targetRefs']);
/** Istio's list of the HTTP attributes of a source and an operation (ztunnel warns of exactly these). */
const HTTP_SOURCE = new Set(['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks']);
const HTTP_OPERATION = new Set(['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths']);

type Kind = 'principal' | 'namespace' | 'serviceAccount' | 'srcIp' | 'dstIp' | 'port';

/** The L4 fields of a source and an operation, and the L4 keys of `when`: what this ztunnel enforces. */
const SOURCE_FIELDS: Record<string, [Kind, boolean]> = {
	principals: ['principal', false],
	notPrincipals: ['principal', true],
	namespaces: ['namespace', false],
	notNamespaces: ['namespace', true],
	serviceAccounts: ['serviceAccount', false],
	notServiceAccounts: ['serviceAccount', true],
	ipBlocks: ['srcIp', false],
	notIpBlocks: ['srcIp', true],
};
const OPERATION_FIELDS: Record<string, [Kind, boolean]> = { ports: ['port', false], notPorts: ['port', true] };
const WHEN_KEYS: Record<string, Kind> = {
	'source.ip': 'srcIp',
	'source.namespace': 'namespace',
	'source.principal': 'principal',
	'destination.ip': 'dstIp',
	'destination.port': 'port',
};

/** Istio's string match: '*' any non-empty value, '*x' suffix, 'x*' prefix, else exact. */
function stringMatch(pattern: string): (s: string) => boolean {
	if (pattern === '*') return (s) => s.length > 0;
	if (pattern.startsWith('*')) {
		const suffix = pattern.slice(1);
		return (s) => s.endsWith(suffix);
	}
	if (pattern.endsWith('*')) {
		const prefix = pattern.slice(0, -1);
		return (s) => s.startsWith(prefix);
	}
	return (s) => s === pattern;
}

/** A value test of one kind, or what is wrong with the value. */
function valueTest(kind: Kind, v: unknown, policyNs: string, trustDomain: string): Test | string {
	if (typeof v !== 'string' || v === '') return `${JSON.stringify(v)} is not a non-empty string`;
	switch (kind) {
		case 'principal': {
			// Istio: the trust domain cluster.local in a policy stands for the mesh's own.
			const p = v.startsWith('cluster.local/') ? `${trustDomain}/${v.slice('cluster.local/'.length)}` : v;
			const m = stringMatch(p);
			return (a) => a.principal !== undefined && m(a.principal);
		}
		case 'namespace': {
			const m = stringMatch(v);
			return (a) => a.namespace !== undefined && m(a.namespace);
		}
		case 'serviceAccount': {
			// 'ns/sa', or 'sa' of the policy's own namespace (Istio's serviceAccounts).
			const slash = v.indexOf('/');
			const ns = slash < 0 ? policyNs : v.slice(0, slash);
			const sa = slash < 0 ? v : v.slice(slash + 1);
			if (!ns || !sa || sa.includes('/')) return `${JSON.stringify(v)} is not <namespace>/<serviceaccount> or <serviceaccount>`;
			return (a) => a.namespace === ns && a.serviceAccount === sa;
		}
		case 'srcIp':
		case 'dstIp': {
			let c;
			try {
				c = parseCidr4(v);
			} catch {
				return `${JSON.stringify(v)} is not an IPv4 address or prefix (Weir enforces IPv4 only)`;
			}
			return kind === 'srcIp' ? (a) => cidrContains(c, a.srcIp) : (a) => cidrContains(c, a.dstIp);
		}
		case 'port': {
			const n = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
			if (!(n >= 1 && n <= 65535)) return `${JSON.stringify(v)} is not a port number (1-65535)`;
			return (a) => a.port === n;
		}
	}
}

/** A field's test: any value (or, negated, none) matches; or what is wrong with the list. */
function fieldTest(kind: Kind, negate: boolean, values: unknown, policyNs: string, trustDomain: string): Test | string {
	if (!Array.isArray(values) || values.length === 0) return 'is not a non-empty list';
	const tests: Test[] = [];
	for (const v of values) {
		const t = valueTest(kind, v, policyNs, trustDomain);
		if (typeof t === 'string') return t;
		tests.push(t);
	}
	const any: Test = tests.length === 1 ? tests[0]! : (a) => tests.some((t) => t(a));
	return negate ? (a) => !any(a) : any;
}

interface RuleParts {
	clauses: Array<Array<Test[]>>;
	unenforced: string[];
}

/** One entry of from (source) or to (operation): an AND of its L4 fields' tests. */
function entryMatch(entry: unknown, where: string, inner: 'source' | 'operation', parts: RuleParts, ns: string, td: string): Test[] {
	const tests: Test[] = [];
	if (!isRecord(entry) || Object.keys(entry).some((k) => k !== inner) || !isRecord(entry[inner])) {
		parts.unenforced.push(`${where} (not {${inner}: {…}})`);
		return tests;
	}
	const body = entry[inner];
	const fields = inner === 'source' ? SOURCE_FIELDS : OPERATION_FIELDS;
	const http = inner === 'source' ? HTTP_SOURCE : HTTP_OPERATION;
	if (Object.keys(body).length === 0) parts.unenforced.push(`${where}.${inner} (empty)`);
	for (const [k, v] of Object.entries(body)) {
		const f = fields[k];
		if (!f) {
			parts.unenforced.push(`${where}.${inner}.${k} (${http.has(k) ? 'HTTP' : 'not supported'})`);
			continue;
		}
		const t = fieldTest(f[0], f[1], v, ns, td);
		if (typeof t === 'string') parts.unenforced.push(`${where}.${inner}.${k} (${t})`);
		else tests.push(t);
	}
	return tests;
}

/** `allow`: an ALLOW policy's rule (dropped when any part cannot be enforced); `drop`: dropped regardless. */
function compileRule(rule: unknown, index: number, ns: string, td: string, allow: boolean, drop: boolean): CompiledRule {
	const parts: RuleParts = { clauses: [], unenforced: [] };
	const at = `rules[${index}]`;
	if (!isRecord(rule)) {
		parts.unenforced.push(`${at} (not an object)`);
	} else {
		for (const [k, v] of Object.entries(rule)) {
			if (k === 'from' || k === 'to') {
				if (!Array.isArray(v) || v.length === 0) {
					parts.unenforced.push(`${k} (not a non-empty list)`);
					continue;
				}
				const inner = k === 'from' ? 'source' : 'operation';
				parts.clauses.push(v.map((e, j) => entryMatch(e, `${k}[${j}]`, inner, parts, ns, td)));
			} else if (k === 'when') {
				if (!Array.isArray(v) || v.length === 0) {
					parts.unenforced.push(`when (not a non-empty list)`);
					continue;
				}
				v.forEach((c: unknown, j) => {
					const where = `when[${j}]`;
					const key = isRecord(c) ? c['key'] : undefined;
					if (!isRecord(c) || typeof key !== 'string' || Object.keys(c).some((x) => !['key', 'values', 'notValues'].includes(x))) {
						parts.unenforced.push(`${where} (not {key, values, notValues})`);
						return;
					}
					const kind = WHEN_KEYS[key];
					if (!kind) {
						parts.unenforced.push(`${where} key ${key} (not an L4 attribute)`);
						return;
					}
					if (c['values'] === undefined && c['notValues'] === undefined) {
						parts.unenforced.push(`${where} key ${key} (neither values nor notValues)`);
						return;
					}
					const tests: Test[] = [];
					for (const [field, negate] of [
						['values', false],
						['notValues', true],
					] as const) {
						if (c[field] === undefined) continue;
						const t = fieldTest(kind, negate, c[field], ns, td);
						if (typeof t === 'string') parts.unenforced.push(`${where}.${field} (${t})`);
						else tests.push(t);
					}
					parts.clauses.push([tests]);
				});
			} else {
				parts.unenforced.push(`${k} (not supported)`);
			}
		}
	}
	const enforced = !drop && !(allow && parts.unenforced.length > 0);
	return { index, enforced, unenforced: parts.unenforced, clauses: enforced ? parts.clauses : [] };
}

function ruleMatches(r: CompiledRule, a: ConnectionAttributes): boolean {
	if (!r.enforced) return false;
	for (const clause of r.clauses) {
		let any = false;
		for (const match of clause) {
			if (match.every((t) => t(a))) {
				any = true;
				break;
			}
		}
		if (!any) return false;
	}
	return true;
}

function brokenPolicy(o: IstioObject, scope: CompiledPolicy['scope'], why: string): CompiledPolicy {
	return { key: o.key, namespace: o.namespace, name: o.name, action: 'DENY', effect: 'DENY', scope, selector: undefined, rules: [], broken: why };
}

function compilePolicy(o: IstioObject, opts: AuthzOptions, problems: PolicyProblem[]): CompiledPolicy {
	const scope = o.namespace === opts.rootNamespace ? 'mesh' : 'namespace';
	const problem = (message: string): void => void problems.push({ policy: o.key, message });
	const broken = (why: string): CompiledPolicy => {
		problem(
			`${why}: the policy cannot be read, so it denies every connection to ${scope === 'mesh' ? 'the mesh' : `namespace ${o.namespace}`} until it is fixed`,
		);
		return brokenPolicy(o, scope, why);
	};
	const spec = o.spec ?? {};
	if (!isRecord(spec)) return broken('spec is not an object');
	const action = spec['action'] ?? 'ALLOW';
	if (typeof action !== 'string' || !ACTIONS.includes(action as PolicyAction)) {
		return broken(`spec.action ${JSON.stringify(action)} is not ALLOW, DENY, AUDIT or CUSTOM`);
	}
	const act = action as PolicyAction;
	const sel = readSelector(spec['selector']);
	if ('error' in sel) return broken(sel.error);
	const rulesIn = spec['rules'] ?? [];
	if (!Array.isArray(rulesIn)) return broken('spec.rules is not a list');

	// Parts of the spec this ztunnel cannot honour: the policy still applies (to the whole
	// scope when its target is unknown); as ALLOW it admits nothing.
	const unsupported: string[] = [];
	let selector = sel.labels;
	for (const k of Object.keys(spec)) {
		if (k === 'provider' && act === 'CUSTOM') continue;
		if (!SPEC_FIELDS.has(k) || k === 'provider') unsupported.push(`spec.${k}`);
	}
	for (const k of ['targetRef', 'targetRefs']) {
		if (spec[k] === undefined || spec[k] === null) continue;
		unsupported.push(`spec.${k} (Weir has no waypoint or gateway; taken as every workload of the ${scope === 'mesh' ? 'mesh' : 'namespace'})`);
		selector = undefined;
	}
	const effect = act === 'ALLOW' ? 'ALLOW' : act === 'AUDIT' ? 'NONE' : 'DENY';
	const allow = effect === 'ALLOW';
	const rules = rulesIn.map((r: unknown, i) => compileRule(r, i, o.namespace, opts.trustDomain, allow, allow && unsupported.length > 0));

	if (unsupported.length) {
		problem(
			`${unsupported.join(', ')} not supported: ${effect === 'ALLOW' ? 'this ALLOW policy admits nothing' : 'its rules are enforced on every workload it may select'}`,
		);
	}
	if (act === 'AUDIT') problem('AUDIT never changes a decision (as in Istio) and Weir writes no audit log yet: the policy is not evaluated');
	if (act === 'CUSTOM') problem('CUSTOM: this ztunnel cannot consult an external authorizer, so the connections its rules select are denied');
	for (const r of rules) {
		if (!r.unenforced.length) continue;
		const what = r.unenforced.join(', ');
		problem(
			effect === 'ALLOW'
				? `rule ${r.index}: ${what} cannot be enforced by the ztunnel (L4): the rule is dropped and admits nothing`
				: `rule ${r.index}: ${what} cannot be enforced by the ztunnel (L4): the rule is enforced without it, so it denies more than written`,
		);
	}
	return { key: o.key, namespace: o.namespace, name: o.name, action: act, effect, scope, selector, rules };
}

/**
 * Compiles AuthorizationPolicy objects (security.istio.io/v1 or v1beta1, as listed from
 * the API server). Never throws: what cannot be read is a problem, and a policy that
 * cannot be read denies what it may apply to.
 */
export function compileAuthorizationPolicies(objects: readonly unknown[], opts: AuthzOptions): CompiledAuthorizationPolicies {
	const problems: PolicyProblem[] = [];
	const policies: CompiledPolicy[] = [];
	objects.forEach((obj, i) => {
		const r = readIstioObject(obj, 'AuthorizationPolicy', i);
		if ('problem' in r) problems.push(r.problem);
		else policies.push(compilePolicy(r.object, opts, problems));
	});
	policies.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
	const mesh = policies.filter((p) => p.scope === 'mesh');
	const byNamespace = new Map<string, CompiledPolicy[]>();
	for (const p of policies) {
		if (p.scope === 'mesh') continue;
		const list = byNamespace.get(p.namespace) ?? [];
		list.push(p);
		byNamespace.set(p.namespace, list);
	}
	return { rootNamespace: opts.rootNamespace, trustDomain: opts.trustDomain, policies, problems, mesh, byNamespace };
}

function deny(reason: string): AuthzDecision {
	return { allowed: false, reason };
}

/** The connection's attributes, or why the request itself is unusable (then it is denied). */
function attributes(req: AuthzRequest): ConnectionAttributes | string {
	const { source, destination } = req;
	if (!isIpv4(source.ip)) return `source address ${JSON.stringify(source.ip)} is not IPv4`;
	if (!isIpv4(destination.ip)) return `destination address ${JSON.stringify(destination.ip)} is not IPv4`;
	if (!Number.isInteger(destination.port) || destination.port < 0 || destination.port > 65535) return `destination port ${destination.port} is not a port`;
	let principal: string | undefined;
	let namespace: string | undefined;
	let serviceAccount: string | undefined;
	if (source.identity !== undefined) {
		try {
			const id = parseSpiffeId(source.identity);
			namespace = id.namespace;
			serviceAccount = id.serviceAccount;
			principal = source.identity.slice('spiffe://'.length);
		} catch (err) {
			return `source identity is not a workload's SPIFFE ID (${(err as Error).message})`;
		}
	}
	return { srcIp: ipv4ToInt(source.ip), dstIp: ipv4ToInt(destination.ip), port: destination.port, principal, namespace, serviceAccount };
}

function list(keys: readonly string[], max = 4): string {
	return keys.length <= max ? keys.join(', ') : `${keys.slice(0, max).join(', ')} and ${keys.length - max} more`;
}

/** Whether the connection may reach the destination workload, and why. Pure. */
export function evaluate(compiled: CompiledAuthorizationPolicies, req: AuthzRequest): AuthzDecision {
	const a = attributes(req);
	if (typeof a === 'string') return deny(`denied: ${a}`);
	const { namespace, labels } = req.destination;
	const applies = (p: CompiledPolicy): boolean => p.effect !== 'NONE' && (p.selector === undefined || selects(p.selector, labels));
	// The root namespace's policies are all in `mesh` (byNamespace has none of them).
	const policies = [...compiled.mesh, ...(compiled.byNamespace.get(namespace) ?? [])].filter(applies);

	for (const p of policies) {
		if (p.effect !== 'DENY') continue;
		if (p.broken) {
			return {
				allowed: false,
				policy: p.key,
				action: 'DENY',
				reason: `denied by ${p.key}, which cannot be read (${p.broken}) and so denies everything it may apply to`,
			};
		}
		for (const r of p.rules) {
			if (!ruleMatches(r, a)) continue;
			const custom = p.action === 'CUSTOM' ? ': its external authorizer cannot be consulted by this ztunnel' : '';
			const partial = r.unenforced.length ? ` (enforced without ${r.unenforced.join(', ')}, which the ztunnel cannot check)` : '';
			return {
				allowed: false,
				policy: p.key,
				action: 'DENY',
				rule: r.index,
				reason: `denied by ${p.action} policy ${p.key} rule ${r.index}${custom}${partial}`,
			};
		}
	}

	const allows = policies.filter((p) => p.effect === 'ALLOW');
	if (allows.length === 0) {
		return { allowed: true, reason: policies.length ? 'allowed: no DENY policy matches and no ALLOW policy applies' : 'allowed: no policy applies' };
	}
	for (const p of allows) {
		for (const r of p.rules) {
			if (ruleMatches(r, a))
				return { allowed: true, policy: p.key, action: 'ALLOW', rule: r.index, reason: `allowed by ALLOW policy ${p.key} rule ${r.index}` };
		}
	}
	const who = req.source.identity ?? `plaintext (no identity) from ${req.source.ip}`;
	const dropped = allows.flatMap((p) => p.rules.filter((r) => !r.enforced).map((r) => `${p.key} rule ${r.index}`));
	const note = dropped.length ? `; dropped as not enforceable here: ${list(dropped)}` : '';
	return {
		allowed: false,
		policy: allows[0]!.key,
		action: 'ALLOW',
		reason: `no ALLOW policy of ${list(allows.map((p) => p.key))} admits ${who} on port ${a.port}${note}`,
	};
}
