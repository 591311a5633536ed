// PeerAuthentication (src/istio/peer-authentication.ts): the mTLS mode of a workload's
// port, with Istio's precedence (mesh < namespace < workload, oldest wins, UNSET
// inherits, portLevelMtls), table-driven.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePeerAuthentications, mtlsMode, workloadMtls, type MtlsDecision } from '../../src/istio/peer-authentication.js';

type Obj = Record<string, unknown>;
const ROOT = { rootNamespace: 'weir-system' };

function pa(namespace: string, name: string, spec: unknown, created = '2026-01-01T00:00:00Z', apiVersion = 'security.istio.io/v1'): Obj {
	return { apiVersion, kind: 'PeerAuthentication', metadata: { namespace, name, creationTimestamp: created }, spec };
}
const mode = (m: string): Obj => ({ mtls: { mode: m } });

interface Case {
	ns?: string;
	labels?: Record<string, string>;
	port?: number;
	want: MtlsDecision;
}

interface Scenario {
	name: string;
	policies: unknown[];
	rootNamespace?: string;
	cases: Case[];
	problems?: RegExp[];
}

const REDIS = { app: 'redis' };

const scenarios: Scenario[] = [
	{
		name: 'no policy: PERMISSIVE, from no policy',
		policies: [],
		cases: [{ want: { mode: 'PERMISSIVE' } }],
	},
	{
		name: 'mesh-wide (root namespace, no selector) applies everywhere',
		policies: [pa('weir-system', 'default', mode('STRICT'))],
		cases: [{ want: { mode: 'STRICT', policy: 'weir-system/default' } }, { ns: 'weir-system', want: { mode: 'STRICT', policy: 'weir-system/default' } }],
	},
	{
		name: 'the root namespace is configurable',
		policies: [pa('istio-system', 'default', mode('STRICT')), pa('weir-system', 'ns', mode('DISABLE'))],
		rootNamespace: 'istio-system',
		cases: [
			{ ns: 'd-redis', want: { mode: 'STRICT', policy: 'istio-system/default' } },
			{ ns: 'weir-system', want: { mode: 'DISABLE', policy: 'weir-system/ns' } },
		],
	},
	{
		name: 'namespace-wide overrides mesh-wide, in its namespace only',
		policies: [pa('weir-system', 'default', mode('STRICT')), pa('d-redis', 'ns', mode('PERMISSIVE'))],
		cases: [
			{ ns: 'd-redis', want: { mode: 'PERMISSIVE', policy: 'd-redis/ns' } },
			{ ns: 'c-app', want: { mode: 'STRICT', policy: 'weir-system/default' } },
		],
	},
	{
		name: 'UNSET or no mtls inherits the level below',
		policies: [pa('weir-system', 'default', mode('STRICT')), pa('d-redis', 'ns', mode('UNSET')), pa('c-app', 'ns', {}), pa('e-db', 'ns', { mtls: {} })],
		cases: [
			{ ns: 'd-redis', want: { mode: 'STRICT', policy: 'weir-system/default' } },
			{ ns: 'c-app', want: { mode: 'STRICT', policy: 'weir-system/default' } },
			{ ns: 'e-db', want: { mode: 'STRICT', policy: 'weir-system/default' } },
		],
	},
	{
		name: 'a workload policy (selector) overrides the namespace’s, for the workloads it selects',
		policies: [pa('d-redis', 'ns', mode('PERMISSIVE')), pa('d-redis', 'redis', { selector: { matchLabels: REDIS }, ...mode('STRICT') })],
		cases: [
			{ labels: REDIS, want: { mode: 'STRICT', policy: 'd-redis/redis' } },
			{ labels: { app: 'redis', extra: 'x' }, want: { mode: 'STRICT', policy: 'd-redis/redis' } },
			{ labels: { app: 'other' }, want: { mode: 'PERMISSIVE', policy: 'd-redis/ns' } },
			{ ns: 'c-app', labels: REDIS, want: { mode: 'PERMISSIVE' } },
		],
	},
	{
		name: 'a workload policy with UNSET inherits the namespace’s and the mesh’s',
		policies: [pa('weir-system', 'default', mode('STRICT')), pa('d-redis', 'redis', { selector: { matchLabels: REDIS } })],
		cases: [{ labels: REDIS, want: { mode: 'STRICT', policy: 'weir-system/default' } }],
	},
	{
		name: 'portLevelMtls: the port’s mode overrides the workload’s; UNSET at a port inherits',
		policies: [
			pa('d-redis', 'redis', {
				selector: { matchLabels: REDIS },
				...mode('PERMISSIVE'),
				portLevelMtls: { '6379': { mode: 'STRICT' }, '9121': { mode: 'UNSET' } },
			}),
			pa('e-db', 'db', { selector: { matchLabels: REDIS }, ...mode('STRICT'), portLevelMtls: { '8080': { mode: 'DISABLE' } } }),
		],
		cases: [
			{ labels: REDIS, port: 6379, want: { mode: 'STRICT', policy: 'd-redis/redis' } },
			{ labels: REDIS, port: 80, want: { mode: 'PERMISSIVE', policy: 'd-redis/redis' } },
			{ labels: REDIS, port: 9121, want: { mode: 'PERMISSIVE', policy: 'd-redis/redis' } },
			{ ns: 'e-db', labels: REDIS, port: 8080, want: { mode: 'DISABLE', policy: 'e-db/db' } },
			{ ns: 'e-db', labels: REDIS, port: 5432, want: { mode: 'STRICT', policy: 'e-db/db' } },
		],
	},
	{
		name: 'portLevelMtls under an inherited STRICT: a PERMISSIVE port is the exception',
		policies: [
			pa('weir-system', 'default', mode('STRICT')),
			pa('d-redis', 'redis', { selector: { matchLabels: REDIS }, portLevelMtls: { '15020': { mode: 'PERMISSIVE' } } }),
		],
		cases: [
			{ labels: REDIS, port: 15020, want: { mode: 'PERMISSIVE', policy: 'd-redis/redis' } },
			{ labels: REDIS, port: 6379, want: { mode: 'STRICT', policy: 'weir-system/default' } },
		],
	},
	{
		name: 'oldest wins at each level (not the name order)',
		policies: [
			pa('weir-system', 'a-newer', mode('PERMISSIVE'), '2026-03-01T00:00:00Z'),
			pa('weir-system', 'z-older', mode('STRICT'), '2026-02-01T00:00:00Z'),
			pa('c-app', 'a-newer', mode('STRICT'), '2026-03-01T00:00:00Z'),
			pa('c-app', 'z-older', mode('DISABLE'), '2026-02-01T00:00:00Z'),
			pa('d-redis', 'a-newer', { selector: { matchLabels: REDIS }, ...mode('STRICT') }, '2026-03-01T00:00:00Z'),
			pa('d-redis', 'z-older', { selector: { matchLabels: { app: 'redis' } }, ...mode('DISABLE') }, '2026-02-01T00:00:00Z'),
		],
		cases: [
			{ ns: 'b-apache', want: { mode: 'STRICT', policy: 'weir-system/z-older' } },
			{ ns: 'c-app', want: { mode: 'DISABLE', policy: 'c-app/z-older' } },
			{ labels: REDIS, want: { mode: 'DISABLE', policy: 'd-redis/z-older' } },
		],
		problems: [
			/^another mesh-wide policy, weir-system\/z-older, is older and wins; ignored$/,
			/^another namespace-wide policy, c-app\/z-older, is older and wins; ignored$/,
		],
	},
	{
		name: 'same age: the first by name wins',
		policies: [pa('c-app', 'b', mode('STRICT')), pa('c-app', 'a', mode('DISABLE'))],
		cases: [{ ns: 'c-app', want: { mode: 'DISABLE', policy: 'c-app/a' } }],
		problems: [/c-app\/a, is older and wins/],
	},
	{
		name: 'a selector in the root namespace selects workloads of the root namespace only',
		policies: [pa('weir-system', 'ztunnel', { selector: { matchLabels: { app: 'ztunnel' } }, ...mode('STRICT') })],
		cases: [
			{ ns: 'weir-system', labels: { app: 'ztunnel' }, want: { mode: 'STRICT', policy: 'weir-system/ztunnel' } },
			{ ns: 'd-redis', labels: { app: 'ztunnel' }, want: { mode: 'PERMISSIVE' } },
		],
	},
	{
		name: 'v1beta1 objects are read as v1',
		policies: [pa('d-redis', 'beta', mode('STRICT'), undefined, 'security.istio.io/v1beta1')],
		cases: [{ want: { mode: 'STRICT', policy: 'd-redis/beta' } }],
	},
	{
		name: 'malformed: an unreadable mode is STRICT; bad ports and foreign objects are ignored',
		policies: [
			pa('d-redis', 'typo', { mtls: { mode: 'STRIKT' } }),
			pa('c-app', 'bad-spec', 'STRICT'),
			pa('e-db', 'bad-selector', { selector: { matchLabels: ['app'] }, ...mode('PERMISSIVE') }),
			pa('f-x', 'ports', { selector: { matchLabels: REDIS }, ...mode('PERMISSIVE'), portLevelMtls: { http: { mode: 'STRICT' }, '80': 'STRICT' } }),
			pa('g-x', 'ns-ports', { ...mode('PERMISSIVE'), portLevelMtls: { '6379': { mode: 'STRICT' } } }),
			{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { namespace: 'h-x', name: 'ap' }, spec: mode('STRICT') },
			{ kind: 'PeerAuthentication', metadata: { namespace: 'h-x', name: 'no-version' }, spec: mode('STRICT') },
		],
		cases: [
			{ ns: 'd-redis', want: { mode: 'STRICT', policy: 'd-redis/typo' } },
			{ ns: 'c-app', want: { mode: 'STRICT', policy: 'c-app/bad-spec' } },
			{ ns: 'e-db', labels: {}, want: { mode: 'STRICT', policy: 'e-db/bad-selector' } },
			{ ns: 'f-x', labels: REDIS, port: 80, want: { mode: 'STRICT', policy: 'f-x/ports' } },
			{ ns: 'f-x', labels: REDIS, port: 81, want: { mode: 'PERMISSIVE', policy: 'f-x/ports' } },
			{ ns: 'g-x', port: 6379, want: { mode: 'STRICT', policy: 'g-x/ns-ports' } },
			{ ns: 'g-x', port: 80, want: { mode: 'PERMISSIVE', policy: 'g-x/ns-ports' } },
			{ ns: 'h-x', want: { mode: 'PERMISSIVE' } },
		],
		problems: [
			/^spec\.mtls "STRIKT" is not \{mode: STRICT\|PERMISSIVE\|DISABLE\|UNSET\}: taken as STRICT$/,
			/^spec is not an object: taken as a namespace-wide STRICT policy$/,
			/^spec\.selector\.matchLabels is not a map: taken as a namespace-wide STRICT policy$/,
			/^spec\.portLevelMtls key "http" is not a port number; ignored$/,
			/^spec\.portLevelMtls\.80 "STRICT" is not \{mode: .*\}: taken as STRICT$/,
			/^spec\.portLevelMtls needs a selector in Istio; Weir applies it to every workload the policy covers$/,
			/^kind "AuthorizationPolicy" is not PeerAuthentication; ignored$/,
			/^apiVersion undefined is not one of/,
		],
	},
];

for (const s of scenarios) {
	test(`peer authentication: ${s.name}`, () => {
		const c = compilePeerAuthentications(s.policies, { rootNamespace: s.rootNamespace ?? ROOT.rootNamespace });
		for (const [i, k] of s.cases.entries()) {
			const got = mtlsMode(c, { namespace: k.ns ?? 'd-redis', labels: k.labels ?? {}, port: k.port ?? 6379 });
			assert.deepEqual(got, k.want, `#${i} ${JSON.stringify(k)}`);
			// The whole workload at once (what the agent's datapath holds) says the same of every port.
			const w = workloadMtls(c, { namespace: k.ns ?? 'd-redis', labels: k.labels ?? {} });
			assert.deepEqual(w.ports.get(k.port ?? 6379) ?? w.workload, k.want, `#${i} workloadMtls`);
			for (const port of [...w.ports.keys(), 1, 65535])
				assert.deepEqual(w.ports.get(port) ?? w.workload, mtlsMode(c, { namespace: k.ns ?? 'd-redis', labels: k.labels ?? {}, port }), `#${i} port ${port}`);
		}
		const messages = c.problems.map((p) => p.message);
		for (const re of s.problems ?? [])
			assert.ok(
				messages.some((m) => re.test(m)),
				`a problem matching ${re} in ${JSON.stringify(messages, null, 1)}`,
			);
		for (const m of messages)
			assert.ok(
				(s.problems ?? []).some((re) => re.test(m)),
				`unexpected problem: ${m}`,
			);
	});
}

test('workloadMtls: the mode of a port no entry names, and every port an applicable policy names, in port order', () => {
	const c = compilePeerAuthentications(
		[
			pa('weir-system', 'default', { mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { 9090: { mode: 'STRICT' } } }),
			pa('d-redis', 'ns', mode('STRICT')),
			pa('d-redis', 'redis', { selector: { matchLabels: REDIS }, portLevelMtls: { 8080: { mode: 'PERMISSIVE' }, 6379: { mode: 'UNSET' } } }),
			pa('d-redis', 'other', { selector: { matchLabels: { app: 'other' } }, portLevelMtls: { 7000: { mode: 'DISABLE' } } }),
		],
		ROOT,
	);
	const w = workloadMtls(c, { namespace: 'd-redis', labels: REDIS });
	assert.deepEqual(w.workload, { mode: 'STRICT', policy: 'd-redis/ns' }, 'UNSET workload mode inherits the namespace');
	assert.deepEqual(
		[...w.ports],
		[
			[6379, { mode: 'STRICT', policy: 'd-redis/ns' }],
			[8080, { mode: 'PERMISSIVE', policy: 'd-redis/redis' }],
			[9090, { mode: 'STRICT', policy: 'd-redis/ns' }],
		],
		'7000 belongs to a policy that does not select this workload',
	);
	assert.deepEqual([...workloadMtls(c, { namespace: 'c-app', labels: REDIS }).ports], [[9090, { mode: 'STRICT', policy: 'weir-system/default' }]]);
	assert.deepEqual(workloadMtls(compilePeerAuthentications([], ROOT), { namespace: 'x', labels: {} }), { workload: { mode: 'PERMISSIVE' }, ports: new Map() });
});
