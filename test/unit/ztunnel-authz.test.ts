// The ztunnel's L4 authorization (src/ztunnel/authz.ts): Istio's AuthorizationPolicy
// semantics, table-driven. Each scenario checks a connection the feature admits next to
// one it refuses, so that removing the feature (or ignoring the field) fails it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileAuthorizationPolicies, evaluate, type AuthzDecision, type AuthzOptions, type AuthzRequest } from '../../src/ztunnel/authz.js';

const OPTS: AuthzOptions = { rootNamespace: 'weir-system', trustDomain: 'cluster.local' };
const APP = 'spiffe://cluster.local/ns/c-app/sa/app';
const APACHE = 'spiffe://cluster.local/ns/b-apache/sa/apache';
const INGRESS = 'spiffe://cluster.local/ns/a-ingress/sa/ingress';

type Obj = Record<string, unknown>;

function ap(namespace: string, name: string, spec: unknown, apiVersion = 'security.istio.io/v1'): Obj {
	return { apiVersion, kind: 'AuthorizationPolicy', metadata: { namespace, name }, ...(spec === undefined ? {} : { spec }) };
}

interface Conn {
	/** undefined: plaintext */
	id?: string | undefined;
	ip?: string;
	ns?: string;
	labels?: Record<string, string>;
	dstIp?: string;
	port?: number;
}

function req(c: Conn): AuthzRequest {
	return {
		source: { ...(c.id ? { identity: c.id } : {}), ip: c.ip ?? '10.0.1.5' },
		destination: { namespace: c.ns ?? 'd-redis', labels: c.labels ?? { app: 'redis' }, ip: c.dstIp ?? '10.0.2.7', port: c.port ?? 6379 },
	};
}

interface Expect {
	conn: Conn;
	allowed: boolean;
	policy?: string;
	rule?: number;
	action?: 'ALLOW' | 'DENY';
	reason?: RegExp;
}

interface Scenario {
	name: string;
	policies: Obj[];
	opts?: AuthzOptions;
	expect: Expect[];
	/** every problem message must match one of these, and each of these some problem */
	problems?: RegExp[];
}

const allowFrom = (source: Obj, ns = 'd-redis'): Obj => ap(ns, 'allow', { rules: [{ from: [{ source }] }] });
const denyFrom = (source: Obj, ns = 'd-redis'): Obj => ap(ns, 'deny', { action: 'DENY', rules: [{ from: [{ source }] }] });

const scenarios: Scenario[] = [
	{
		name: 'no policy: allowed',
		policies: [],
		expect: [{ conn: { id: APP }, allowed: true, reason: /^allowed: no policy applies$/ }],
	},
	{
		name: 'DENY is evaluated before ALLOW',
		policies: [
			allowFrom({ principals: ['cluster.local/ns/c-app/sa/app'] }),
			ap('d-redis', 'deny-app', { action: 'DENY', rules: [{ to: [{ operation: { ports: ['6379'] } }] }] }),
		],
		expect: [
			{ conn: { id: APP }, allowed: false, policy: 'd-redis/deny-app', action: 'DENY', rule: 0, reason: /^denied by DENY policy d-redis\/deny-app rule 0$/ },
			{ conn: { id: APP, port: 80 }, allowed: true, policy: 'd-redis/allow', action: 'ALLOW', rule: 0 },
		],
	},
	{
		name: 'a DENY policy that does not match, and no ALLOW policy: allowed',
		policies: [denyFrom({ namespaces: ['b-apache'] })],
		expect: [
			{ conn: { id: APP }, allowed: true, reason: /^allowed: no DENY policy matches and no ALLOW policy applies$/ },
			{ conn: { id: APACHE }, allowed: false, policy: 'd-redis/deny' },
		],
	},
	{
		name: 'an ALLOW policy applies but no rule matches: denied, naming the policies and the peer',
		policies: [
			ap('d-redis', 'allow-app', {
				rules: [{ from: [{ source: { namespaces: ['a-ingress'] } }] }, { from: [{ source: { principals: ['cluster.local/ns/c-app/sa/app'] } }] }],
			}),
			ap('d-redis', 'allow-ingress', { rules: [{ from: [{ source: { namespaces: ['a-ingress'] } }] }] }),
		],
		expect: [
			{ conn: { id: APP }, allowed: true, policy: 'd-redis/allow-app', rule: 1, reason: /^allowed by ALLOW policy d-redis\/allow-app rule 1$/ },
			{ conn: { id: INGRESS }, allowed: true, policy: 'd-redis/allow-app', rule: 0 },
			{
				conn: { id: APACHE },
				allowed: false,
				policy: 'd-redis/allow-app',
				action: 'ALLOW',
				reason: /^no ALLOW policy of d-redis\/allow-app, d-redis\/allow-ingress admits spiffe:\/\/cluster\.local\/ns\/b-apache\/sa\/apache on port 6379$/,
			},
			{ conn: {}, allowed: false, reason: /admits plaintext \(no identity\) from 10\.0\.1\.5 on port 6379/ },
		],
	},
	{
		name: 'an ALLOW policy with spec {} (no rules) denies everything; a missing spec too',
		policies: [ap('d-redis', 'deny-all', {}), ap('e-db', 'no-spec', undefined)],
		expect: [
			{ conn: { id: APP }, allowed: false, policy: 'd-redis/deny-all' },
			{ conn: {}, allowed: false },
			{ conn: { id: APP, ns: 'e-db' }, allowed: false, policy: 'e-db/no-spec' },
			{ conn: { id: APP, ns: 'f-other' }, allowed: true },
		],
	},
	{
		name: 'a rule {} matches everything, plaintext included',
		policies: [ap('d-redis', 'allow-all', { rules: [{}] })],
		expect: [
			{ conn: { id: APP }, allowed: true, rule: 0 },
			{ conn: {}, allowed: true, rule: 0 },
		],
	},
	{
		name: 'a DENY policy with no rules matches nothing',
		policies: [ap('d-redis', 'deny-nothing', { action: 'DENY' })],
		expect: [{ conn: { id: APP }, allowed: true }],
	},
	{
		name: 'principals: exact',
		policies: [allowFrom({ principals: ['cluster.local/ns/c-app/sa/app'] })],
		expect: [
			{ conn: { id: APP }, allowed: true },
			{ conn: { id: APACHE }, allowed: false },
			{ conn: { id: 'spiffe://cluster.local/ns/c-app/sa/app2' }, allowed: false },
		],
	},
	{
		name: 'principals: prefix wildcard',
		policies: [allowFrom({ principals: ['cluster.local/ns/c-app/*'] })],
		expect: [
			{ conn: { id: APP }, allowed: true },
			{ conn: { id: 'spiffe://cluster.local/ns/c-app/sa/other' }, allowed: true },
			{ conn: { id: 'spiffe://cluster.local/ns/c-apps/sa/app' }, allowed: false },
		],
	},
	{
		name: 'principals: suffix wildcard',
		policies: [allowFrom({ principals: ['*/sa/app'] })],
		expect: [
			{ conn: { id: APP }, allowed: true },
			{ conn: { id: 'spiffe://other.td/ns/x/sa/app' }, allowed: true },
			{ conn: { id: APACHE }, allowed: false },
		],
	},
	{
		name: 'principals: * is any authenticated peer, never plaintext',
		policies: [allowFrom({ principals: ['*'] })],
		expect: [
			{ conn: { id: APACHE }, allowed: true },
			{ conn: {}, allowed: false },
		],
	},
	{
		name: 'principals: any of the list',
		policies: [allowFrom({ principals: ['cluster.local/ns/a-ingress/sa/ingress', 'cluster.local/ns/c-app/sa/app'] })],
		expect: [
			{ conn: { id: APP }, allowed: true },
			{ conn: { id: INGRESS }, allowed: true },
			{ conn: { id: APACHE }, allowed: false },
		],
	},
	{
		name: 'notPrincipals: none of the list (plaintext has no principal, so it is not in the list)',
		policies: [denyFrom({ notPrincipals: ['cluster.local/ns/c-app/sa/app'] })],
		expect: [
			{ conn: { id: APP }, allowed: true },
			{ conn: { id: APACHE }, allowed: false, policy: 'd-redis/deny' },
			{ conn: {}, allowed: false, policy: 'd-redis/deny' },
		],
	},
	{
		name: 'cluster.local in a principal is the mesh trust domain',
		policies: [allowFrom({ principals: ['cluster.local/ns/c-app/sa/app'] })],
		opts: { rootNamespace: 'weir-system', trustDomain: 'prod.example.org' },
		expect: [
			{ conn: { id: 'spiffe://prod.example.org/ns/c-app/sa/app' }, allowed: true },
			{ conn: { id: 'spiffe://other.example.org/ns/c-app/sa/app' }, allowed: false },
		],
	},
	{
		name: 'namespaces: exact, prefix and suffix wildcards; never plaintext',
		policies: [allowFrom({ namespaces: ['a-ingress', 'c-*', '*-apache'] })],
		expect: [
			{ conn: { id: INGRESS }, allowed: true },
			{ conn: { id: APP }, allowed: true },
			{ conn: { id: APACHE }, allowed: true },
			{ conn: { id: 'spiffe://cluster.local/ns/x-other/sa/app' }, allowed: false },
			{ conn: {}, allowed: false },
		],
	},
	{
		name: 'namespaces: * never matches plaintext',
		policies: [allowFrom({ namespaces: ['*'] })],
		expect: [
			{ conn: { id: APACHE }, allowed: true },
			{ conn: {}, allowed: false },
		],
	},
	{
		name: 'notNamespaces',
		policies: [allowFrom({ notNamespaces: ['b-apache'] })],
		expect: [
			{ conn: { id: APP }, allowed: true },
			{ conn: { id: APACHE }, allowed: false },
		],
	},
	{
		name: 'serviceAccounts: namespace/name, or a name of the policy’s namespace',
		policies: [allowFrom({ serviceAccounts: ['c-app/app', 'redis'] })],
		expect: [
			{ conn: { id: APP }, allowed: true },
			{ conn: { id: 'spiffe://cluster.local/ns/d-redis/sa/redis' }, allowed: true },
			{ conn: { id: 'spiffe://cluster.local/ns/c-app/sa/redis' }, allowed: false },
			{ conn: {}, allowed: false },
		],
	},
	{
		name: 'notServiceAccounts',
		policies: [allowFrom({ notServiceAccounts: ['c-app/app'] })],
		expect: [
			{ conn: { id: APP }, allowed: false },
			{ conn: { id: APACHE }, allowed: true },
		],
	},
	{
		name: 'ipBlocks: prefixes and bare addresses, plaintext included',
		policies: [allowFrom({ ipBlocks: ['10.0.1.0/24', '192.168.7.7'] })],
		expect: [
			{ conn: { ip: '10.0.1.200' }, allowed: true },
			{ conn: { ip: '192.168.7.7', id: APP }, allowed: true },
			{ conn: { ip: '192.168.7.8' }, allowed: false },
			{ conn: { ip: '10.0.2.1' }, allowed: false },
		],
	},
	{
		name: 'notIpBlocks',
		policies: [allowFrom({ notIpBlocks: ['10.0.0.0/8'] })],
		expect: [
			{ conn: { ip: '10.9.9.9' }, allowed: false },
			{ conn: { ip: '172.16.0.1' }, allowed: true },
		],
	},
	{
		name: 'ports and notPorts',
		policies: [
			ap('d-redis', 'allow', {
				rules: [{ to: [{ operation: { ports: ['6379', '26379'] } }] }, { to: [{ operation: { notPorts: ['6379', '26379', '80'] } }] }],
			}),
		],
		expect: [
			{ conn: { port: 6379 }, allowed: true, rule: 0 },
			{ conn: { port: 26379 }, allowed: true, rule: 0 },
			{ conn: { port: 9121 }, allowed: true, rule: 1 },
			{ conn: { port: 80 }, allowed: false },
		],
	},
	{
		name: 'within a rule from and to must both hold; any entry of either',
		policies: [
			ap('d-redis', 'allow', {
				rules: [
					{
						from: [{ source: { namespaces: ['c-app'] } }, { source: { ipBlocks: ['10.0.9.0/24'] } }],
						to: [{ operation: { ports: ['6379'] } }],
					},
				],
			}),
		],
		expect: [
			{ conn: { id: APP, port: 6379 }, allowed: true },
			{ conn: { ip: '10.0.9.1', port: 6379 }, allowed: true },
			{ conn: { id: APP, port: 80 }, allowed: false },
			{ conn: { id: APACHE, port: 6379 }, allowed: false },
		],
	},
	{
		name: 'within a source every field must hold',
		policies: [allowFrom({ namespaces: ['c-app'], ipBlocks: ['10.0.1.0/24'] })],
		expect: [
			{ conn: { id: APP, ip: '10.0.1.9' }, allowed: true },
			{ conn: { id: APP, ip: '10.0.3.9' }, allowed: false },
			{ conn: { ip: '10.0.1.9' }, allowed: false },
		],
	},
	{
		name: 'when: source.ip, source.namespace, source.principal, destination.port, destination.ip (values and notValues)',
		policies: [
			ap('d-redis', 'allow', {
				rules: [
					{
						when: [
							{ key: 'source.ip', values: ['10.0.1.0/24'], notValues: ['10.0.1.66'] },
							{ key: 'source.namespace', values: ['c-*'] },
							{ key: 'source.principal', notValues: ['cluster.local/ns/c-app/sa/blocked'] },
							{ key: 'destination.port', values: ['6379'] },
							{ key: 'destination.ip', notValues: ['10.0.2.99'] },
						],
					},
				],
			}),
		],
		expect: [
			{ conn: { id: APP }, allowed: true },
			{ conn: { id: APP, ip: '10.0.1.66' }, allowed: false },
			{ conn: { id: APP, ip: '10.0.3.1' }, allowed: false },
			{ conn: { id: APACHE }, allowed: false },
			{ conn: { id: 'spiffe://cluster.local/ns/c-app/sa/blocked' }, allowed: false },
			{ conn: { id: APP, port: 80 }, allowed: false },
			{ conn: { id: APP, dstIp: '10.0.2.99' }, allowed: false },
			{ conn: {}, allowed: false },
		],
	},
	{
		name: 'scope: the root namespace’s policies apply to every namespace; another namespace’s do not',
		policies: [
			ap('weir-system', 'mesh-deny-apache', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['b-apache'] } }] }] }),
			allowFrom({ namespaces: ['c-app'] }, 'e-db'),
		],
		expect: [
			{ conn: { id: APACHE, ns: 'd-redis' }, allowed: false, policy: 'weir-system/mesh-deny-apache' },
			{ conn: { id: APACHE, ns: 'weir-system' }, allowed: false, policy: 'weir-system/mesh-deny-apache' },
			{ conn: { id: INGRESS, ns: 'd-redis' }, allowed: true, reason: /^allowed: no DENY policy matches and no ALLOW policy applies$/ },
			{ conn: { id: INGRESS, ns: 'e-db' }, allowed: false, policy: 'e-db/allow' },
		],
	},
	{
		name: 'scope: the root namespace is configurable (Istio’s istio-system)',
		policies: [ap('istio-system', 'mesh', {})],
		opts: { rootNamespace: 'istio-system', trustDomain: 'cluster.local' },
		expect: [
			{ conn: { id: APP, ns: 'd-redis' }, allowed: false, policy: 'istio-system/mesh' },
			{ conn: { id: APP, ns: 'x' }, allowed: false },
		],
	},
	{
		name: 'scope: a selector picks workloads of its namespace by label; in the root namespace, of every namespace',
		policies: [
			ap('d-redis', 'redis-only', { selector: { matchLabels: { app: 'redis', tier: 'db' } }, rules: [{ from: [{ source: { namespaces: ['c-app'] } }] }] }),
			ap('weir-system', 'mesh-metrics', {
				selector: { matchLabels: { metrics: 'private' } },
				action: 'DENY',
				rules: [{ to: [{ operation: { ports: ['9121'] } }] }],
			}),
		],
		expect: [
			{ conn: { id: APACHE, labels: { app: 'redis', tier: 'db' } }, allowed: false, policy: 'd-redis/redis-only' },
			{ conn: { id: APP, labels: { app: 'redis', tier: 'db' } }, allowed: true },
			{ conn: { id: APACHE, labels: { app: 'redis' } }, allowed: true },
			{ conn: { id: APACHE, ns: 'e-db', labels: { app: 'redis', tier: 'db' } }, allowed: true },
			{ conn: { id: APP, ns: 'e-db', labels: { metrics: 'private' }, port: 9121 }, allowed: false, policy: 'weir-system/mesh-metrics' },
			{ conn: { id: APP, ns: 'e-db', labels: { metrics: 'public' }, port: 9121 }, allowed: true },
		],
	},
	{
		name: 'an empty matchLabels selects the whole namespace',
		policies: [ap('d-redis', 'all', { selector: { matchLabels: {} } })],
		expect: [
			{ conn: { labels: { anything: 'x' } }, allowed: false },
			{ conn: { ns: 'e-db' }, allowed: true },
		],
	},
	{
		name: 'v1beta1 objects are read as v1',
		policies: [ap('d-redis', 'beta', { rules: [{ from: [{ source: { principals: ['cluster.local/ns/c-app/sa/app'] } }] }] }, 'security.istio.io/v1beta1')],
		expect: [
			{ conn: { id: APP }, allowed: true, policy: 'd-redis/beta' },
			{ conn: { id: APACHE }, allowed: false, policy: 'd-redis/beta' },
		],
	},
	{
		name: 'AUDIT never changes a decision',
		policies: [ap('d-redis', 'audit', { action: 'AUDIT', rules: [{ from: [{ source: { namespaces: ['nobody'] } }] }] })],
		expect: [{ conn: { id: APP }, allowed: true, reason: /^allowed: no policy applies$/ }],
		problems: [/AUDIT never changes a decision/],
	},
	{
		name: 'CUSTOM: the connections its rules select are denied (no external authorizer to ask)',
		policies: [ap('d-redis', 'ext', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { ports: ['6379'] } }] }] })],
		expect: [
			{
				conn: { id: APP },
				allowed: false,
				policy: 'd-redis/ext',
				action: 'DENY',
				rule: 0,
				reason: /^denied by CUSTOM policy d-redis\/ext rule 0: its external authorizer/,
			},
			{ conn: { id: APP, port: 80 }, allowed: true },
		],
		problems: [/CUSTOM: this ztunnel cannot consult an external authorizer/],
	},
	{
		name: 'an ALLOW policy with a targetRef (for a waypoint) admits nothing in its namespace',
		policies: [ap('d-redis', 'waypoint', { targetRefs: [{ kind: 'Service', group: '', name: 'redis' }], rules: [{}] })],
		expect: [
			{ conn: { id: APP, labels: { app: 'other' } }, allowed: false, policy: 'd-redis/waypoint' },
			{ conn: { id: APP, ns: 'e-db' }, allowed: true },
		],
		problems: [/spec\.targetRefs .*not supported: this ALLOW policy admits nothing/],
	},
	{
		name: 'a DENY policy with a targetRef denies what its rules select in its whole namespace',
		policies: [
			ap('d-redis', 'waypoint-deny', {
				action: 'DENY',
				targetRef: { kind: 'Service', group: '', name: 'redis' },
				selector: { matchLabels: { app: 'redis' } },
				rules: [{ from: [{ source: { namespaces: ['b-apache'] } }] }],
			}),
		],
		expect: [
			{ conn: { id: APACHE, labels: { app: 'other' } }, allowed: false, policy: 'd-redis/waypoint-deny' },
			{ conn: { id: APP, labels: { app: 'other' } }, allowed: true },
		],
		problems: [/spec\.targetRef .*its rules are enforced on every workload it may select/],
	},
	{
		name: 'an ALLOW rule that cannot be enforced is dropped; the policy’s other rules still admit',
		policies: [
			ap('d-redis', 'allow', {
				rules: [
					{ from: [{ source: { principals: ['cluster.local/ns/b-apache/sa/apache'] } }], to: [{ operation: { methods: ['GET'] } }] },
					{ from: [{ source: { namespaces: ['c-app'] } }] },
				],
			}),
		],
		expect: [
			{ conn: { id: APP }, allowed: true, rule: 1 },
			{ conn: { id: APACHE }, allowed: false, reason: /dropped as not enforceable here: d-redis\/allow rule 0$/ },
		],
		problems: [/^rule 0: to\[0\]\.operation\.methods \(HTTP\) cannot be enforced by the ztunnel \(L4\): the rule is dropped and admits nothing$/],
	},
	{
		name: 'a DENY rule that cannot be enforced is enforced without those parts: its L4 parts still select',
		policies: [
			ap('d-redis', 'deny', {
				action: 'DENY',
				rules: [
					{
						from: [{ source: { namespaces: ['b-apache'], requestPrincipals: ['issuer/subject'] } }],
						to: [{ operation: { methods: ['POST'], ports: ['6379'] } }],
					},
				],
			}),
		],
		expect: [
			{
				conn: { id: APACHE },
				allowed: false,
				rule: 0,
				reason:
					/^denied by DENY policy d-redis\/deny rule 0 \(enforced without from\[0\]\.source\.requestPrincipals \(HTTP\), to\[0\]\.operation\.methods \(HTTP\), which the ztunnel cannot check\)$/,
			},
			{ conn: { id: APACHE, port: 80 }, allowed: true },
			{ conn: { id: APP }, allowed: true },
		],
		problems: [/^rule 0: .* the rule is enforced without it, so it denies more than written$/],
	},
	{
		name: 'malformed values: an ALLOW rule with one is dropped, a DENY rule is enforced without it',
		policies: [
			ap('d-redis', 'allow', { rules: [{ from: [{ source: { ipBlocks: ['10.0.1.0/33'] } }] }, { to: [{ operation: { ports: ['6379'] } }] }] }),
			ap('d-redis', 'deny', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['b-apache'] } }], to: [{ operation: { ports: ['http'] } }] }] }),
		],
		expect: [
			{ conn: { id: APP, port: 6379 }, allowed: true, rule: 1 },
			{ conn: { id: APP, port: 80 }, allowed: false },
			{ conn: { id: APACHE, port: 6379 }, allowed: false, policy: 'd-redis/deny' },
		],
		problems: [
			/^rule 0: from\[0\]\.source\.ipBlocks .*10\.0\.1\.0\/33.* the rule is dropped/,
			/^rule 0: to\[0\]\.operation\.ports .*"http" is not a port number.* enforced without it/,
		],
	},
	{
		name: 'malformed policies: unreadable objects are ignored, an unreadable spec denies its whole namespace',
		policies: [
			ap('d-redis', 'bad-action', { action: 'MAYBE', rules: [{}] }),
			{ apiVersion: 'security.istio.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { namespace: 'e-db', name: 'old' }, spec: {} },
			{ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { namespace: 'e-db', name: 'pa' }, spec: {} },
			{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'no-namespace' }, spec: {} },
			ap('f-x', 'bad-selector', { selector: { matchLabels: { app: 7 } } }),
			ap('g-x', 'bad-rules', { action: 'DENY', rules: 'all' }),
			'not an object' as unknown as Obj,
		],
		expect: [
			{
				conn: { id: APP },
				allowed: false,
				policy: 'd-redis/bad-action',
				action: 'DENY',
				reason: /^denied by d-redis\/bad-action, which cannot be read \(spec\.action "MAYBE"/,
			},
			{ conn: { id: APP, ns: 'e-db' }, allowed: true },
			{ conn: { id: APP, ns: 'f-x', labels: {} }, allowed: false, policy: 'f-x/bad-selector' },
			{ conn: { id: APP, ns: 'g-x' }, allowed: false, policy: 'g-x/bad-rules' },
		],
		problems: [
			/^spec\.action "MAYBE" is not ALLOW, DENY, AUDIT or CUSTOM: the policy cannot be read, so it denies every connection to namespace d-redis until it is fixed$/,
			/^apiVersion "security\.istio\.io\/v1alpha1" is not one of security\.istio\.io\/v1, security\.istio\.io\/v1beta1; ignored$/,
			/^kind "PeerAuthentication" is not AuthorizationPolicy; ignored$/,
			/^metadata\.name and metadata\.namespace are required; ignored$/,
			/^spec\.selector\.matchLabels\.app is not a string: the policy cannot be read/,
			/^spec\.rules is not a list: the policy cannot be read/,
			/^not an object; ignored$/,
		],
	},
	{
		name: 'requests the ztunnel cannot describe are denied',
		policies: [],
		expect: [
			{ conn: { ip: 'fe80::1' }, allowed: false, reason: /^denied: source address "fe80::1" is not IPv4$/ },
			{ conn: { dstIp: 'x' }, allowed: false, reason: /destination address/ },
			{ conn: { port: 70000 }, allowed: false, reason: /destination port/ },
			{ conn: { id: 'spiffe://cluster.local/ns/A/sa/b' }, allowed: false, reason: /source identity is not a workload's SPIFFE ID/ },
		],
	},
];

function check(d: AuthzDecision, e: Expect, where: string): void {
	assert.equal(d.allowed, e.allowed, `${where}: ${d.reason}`);
	if ('policy' in e) assert.equal(d.policy, e.policy, `${where}: policy (${d.reason})`);
	if ('rule' in e) assert.equal(d.rule, e.rule, `${where}: rule (${d.reason})`);
	if ('action' in e) assert.equal(d.action, e.action, `${where}: action (${d.reason})`);
	if (e.reason) assert.match(d.reason, e.reason, where);
}

for (const s of scenarios) {
	test(`authz: ${s.name}`, () => {
		const c = compileAuthorizationPolicies(s.policies, s.opts ?? OPTS);
		for (const [i, e] of s.expect.entries()) check(evaluate(c, req(e.conn)), e, `#${i} ${JSON.stringify(e.conn)}`);
		if (s.problems) {
			const messages = c.problems.map((p) => p.message);
			for (const re of s.problems)
				assert.ok(
					messages.some((m) => re.test(m)),
					`a problem matching ${re} in ${JSON.stringify(messages, null, 1)}`,
				);
			for (const m of messages)
				assert.ok(
					s.problems.some((re) => re.test(m)),
					`unexpected problem: ${m}`,
				);
		}
	});
}

/** A source that an ALLOW rule would admit, plus one field the ztunnel cannot check. */
const UNENFORCEABLE: Array<[string, Obj]> = [
	['source.requestPrincipals', { from: [{ source: { namespaces: ['c-app'], requestPrincipals: ['*'] } }] }],
	['source.notRequestPrincipals', { from: [{ source: { namespaces: ['c-app'], notRequestPrincipals: ['x/y'] } }] }],
	['source.remoteIpBlocks', { from: [{ source: { namespaces: ['c-app'], remoteIpBlocks: ['0.0.0.0/0'] } }] }],
	['source.notRemoteIpBlocks', { from: [{ source: { namespaces: ['c-app'], notRemoteIpBlocks: ['1.2.3.4'] } }] }],
	['source.trustDomains (not known to this ztunnel)', { from: [{ source: { namespaces: ['c-app'], trustDomains: ['cluster.local'] } }] }],
	['operation.methods', { from: [{ source: { namespaces: ['c-app'] } }], to: [{ operation: { methods: ['GET'] } }] }],
	['operation.notMethods', { from: [{ source: { namespaces: ['c-app'] } }], to: [{ operation: { notMethods: ['DELETE'] } }] }],
	['operation.paths', { from: [{ source: { namespaces: ['c-app'] } }], to: [{ operation: { paths: ['/'] } }] }],
	['operation.notPaths', { from: [{ source: { namespaces: ['c-app'] } }], to: [{ operation: { notPaths: ['/admin'] } }] }],
	['operation.hosts', { from: [{ source: { namespaces: ['c-app'] } }], to: [{ operation: { hosts: ['redis'] } }] }],
	['operation.notHosts', { from: [{ source: { namespaces: ['c-app'] } }], to: [{ operation: { notHosts: ['x'] } }] }],
	['operation.ports with an unknown field', { to: [{ operation: { ports: ['6379'], portRanges: ['1-2'] } }] }],
	['when request.headers', { from: [{ source: { namespaces: ['c-app'] } }], when: [{ key: 'request.headers[x-user]', values: ['a'] }] }],
	['when request.auth.claims', { when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }],
	['when connection.sni', { when: [{ key: 'connection.sni', values: ['x'] }] }],
	['an unknown rule field', { from: [{ source: { namespaces: ['c-app'] } }], unless: [{}] }],
	['an empty source', { from: [{ source: {} }] }],
	['a when with no values', { when: [{ key: 'source.ip' }] }],
];

test('authz: every unenforceable part makes an ALLOW rule admit nothing and a DENY rule deny', () => {
	for (const [what, rule] of UNENFORCEABLE) {
		const allow = compileAuthorizationPolicies([ap('d-redis', 'allow', { rules: [rule] })], OPTS);
		assert.equal(evaluate(allow, req({ id: APP })).allowed, false, `ALLOW with ${what}`);
		assert.ok(allow.problems.length > 0, `ALLOW with ${what}: a problem`);
		const deny = compileAuthorizationPolicies([ap('d-redis', 'deny', { action: 'DENY', rules: [rule] })], OPTS);
		const d = evaluate(deny, req({ id: APP }));
		assert.equal(d.allowed, false, `DENY with ${what}`);
		assert.match(d.reason, /enforced without/, `DENY with ${what}`);
		// The same rules without the unenforceable part decide as written (the table is fair).
	}
	// Control: the L4 part alone admits app, so the denials above come from the unenforceable part.
	assert.equal(evaluate(compileAuthorizationPolicies([allowFrom({ namespaces: ['c-app'] })], OPTS), req({ id: APP })).allowed, true);
});

test('authz: the compiled form is indexed by namespace, the root namespace’s policies kept apart', () => {
	const c = compileAuthorizationPolicies([ap('d-redis', 'b', {}), ap('d-redis', 'a', {}), ap('weir-system', 'm', {}), ap('e-db', 'x', {})], OPTS);
	assert.deepEqual(
		c.policies.map((p) => p.key),
		['d-redis/a', 'd-redis/b', 'e-db/x', 'weir-system/m'],
	);
	assert.deepEqual(
		c.mesh.map((p) => p.key),
		['weir-system/m'],
	);
	assert.deepEqual(
		c.byNamespace.get('d-redis')?.map((p) => p.key),
		['d-redis/a', 'd-redis/b'],
	);
	assert.equal(c.byNamespace.has('weir-system'), false);
	assert.deepEqual(c.problems, []);
});
