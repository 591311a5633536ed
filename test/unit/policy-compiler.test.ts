// The compiler against the reference evaluator, through a model of the datapath's
// lookups: every generated case, every (source, destination, protocol, port).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IPPROTO } from '../../src/kernel/codecs.js';
import { Dir, EndpointFlags, Identity, IpcacheFlags, MtlsPortMode } from '../../src/kernel/layout.js';
import { ISTIO_DATAPLANE_MODE, MESH_KEY } from '../../src/shared/mesh.js';
import { IdentityAllocator } from '../../src/policy/identity.js';
import { CompileCache, RuleIdAllocator, compile, policyAffects } from '../../src/policy/compiler.js';
import { NamespaceInfo, NetworkPolicy, PodInfo } from '../../src/policy/model.js';
import { selectorMatches } from '../../src/policy/selector.js';
import { toTrie } from '../../src/policy/reconcile.js';
import { modelAllows } from '../helpers/datapath-model.js';
import { EXTERNAL_IP, NAMESPACES, PODS, PROBES, podIp, generateCases, worldFor } from '../helpers/policy-cases.js';
import { RefEnd, RefPod, referenceAllows } from '../helpers/policy-reference.js';

const refPods: RefPod[] = PODS.map((p, i) => ({ ...p, ip: podIp(i) }));
const pods: PodInfo[] = refPods.map((p) => ({ ...p, ips: [p.ip], nodeName: 'n1' }));
const endpointIds = new Map(refPods.map((p, i) => [`${p.namespace}/${p.name}`, i + 1]));

function compileCase(policies: NetworkPolicy[]) {
	return compile({
		pods,
		namespaces: NAMESPACES,
		policies,
		nodes: [{ name: 'n1', ips: ['192.168.255.1'] }],
		localNode: 'n1',
		endpointIds,
		identities: new IdentityAllocator(),
		rules: new RuleIdAllocator(),
	});
}

test('at least 60 generated cases, all compiled without problems and matching the reference', () => {
	const cases = generateCases();
	assert.ok(cases.length >= 60, `${cases.length} cases`);
	const ends: RefEnd[] = [...refPods.map((p) => ({ ip: p.ip, pod: p })), { ip: EXTERNAL_IP }];
	let probes = 0;
	for (const c of cases) {
		const compiled = compileCase(c.policies as NetworkPolicy[]);
		assert.deepEqual(compiled.problems, [], c.name);
		const world = worldFor(refPods, c.policies);
		for (const src of ends) {
			for (const dst of ends) {
				if (src === dst || (!src.pod && !dst.pod)) continue;
				for (const pr of PROBES) {
					const want = referenceAllows(world, src, dst, pr.proto, pr.port);
					const got = modelAllows(compiled, src.ip, dst.ip, pr.proto === 'TCP' ? IPPROTO.TCP : IPPROTO.UDP, pr.port);
					probes++;
					assert.equal(
						got,
						want,
						`case '${c.name}': ${src.pod ? `${src.pod.namespace}/${src.pod.name}` : src.ip} -> ${dst.pod ? `${dst.pod.namespace}/${dst.pod.name}` : dst.ip} ${pr.proto}/${pr.port}`,
					);
				}
			}
		}
	}
	assert.ok(probes > 5000);
});

test('identities: one per (namespace, labels, namespace labels); reserved for nodes; CIDRs for ipBlocks', () => {
	const twin: PodInfo = { ...pods[0]!, name: 'a2', ips: ['10.230.0.99'] };
	const c = compile({
		pods: [...pods, twin],
		namespaces: NAMESPACES,
		policies: [
			{
				metadata: { namespace: 'x', name: 'p' },
				spec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '203.0.113.0/24', except: ['203.0.113.0/28'] } }] }] },
			},
		],
		nodes: [
			{ name: 'n1', ips: ['192.168.255.1'] },
			{ name: 'n2', ips: ['192.168.255.2'] },
		],
		localNode: 'n1',
		endpointIds,
		identities: new IdentityAllocator(),
		rules: new RuleIdAllocator(),
	});
	assert.equal(c.ipcache.get('10.230.0.99/32'), c.ipcache.get('10.230.0.10/32'), 'same labels, same identity');
	assert.notEqual(c.ipcache.get('10.230.0.10/32'), c.ipcache.get('10.230.0.12/32'), 'same labels in another namespace differ');
	assert.equal(c.ipcache.get('192.168.255.1/32'), Identity.Host);
	assert.equal(c.ipcache.get('192.168.255.2/32'), Identity.RemoteNode);
	const outer = c.ipcache.get('203.0.113.0/24')!;
	const except = c.ipcache.get('203.0.113.0/28')!;
	assert.ok(outer >= Identity.FirstCidr && except >= Identity.FirstCidr && outer !== except);
	const admitted = new Set(c.entries.filter((e) => e.direction === Dir.Ingress).map((e) => e.identity));
	assert.ok(admitted.has(outer) && !admitted.has(except));
	const ep = c.endpoints.get('10.230.0.10')!;
	assert.equal(ep.flags, EndpointFlags.IngressIsolated);
	assert.deepEqual(ep.isolatedBy, { ingress: ['x/p'], egress: [] });
});

test('an ipBlock selects a pod by address and not its twin (same labels) outside the block', () => {
	const inside: PodInfo = { ...pods[1]!, name: 'b-in', ips: ['10.231.0.5'] };
	const outside: PodInfo = { ...pods[1]!, name: 'b-out', ips: ['10.231.1.5'] };
	const excepted: PodInfo = { ...pods[1]!, name: 'b-except', ips: ['10.231.0.200'] };
	const policy: NetworkPolicy = {
		metadata: { namespace: 'z', name: 'from-block' },
		spec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.231.0.0/24', except: ['10.231.0.128/25'] } }] }] },
	};
	const c = compile({
		pods: [...pods, inside, outside, excepted],
		namespaces: NAMESPACES,
		policies: [policy],
		nodes: [],
		localNode: 'n1',
		endpointIds,
		identities: new IdentityAllocator(),
		rules: new RuleIdAllocator(),
	});
	assert.deepEqual(c.problems, []);
	const id = (ip: string): number => c.ipcache.get(`${ip}/32`)!;
	assert.equal(id('10.230.0.11'), id('10.231.1.5'), 'outside every block: the label identity');
	assert.notEqual(id('10.231.0.5'), id('10.231.1.5'), 'inside the block: an identity of its own');
	assert.notEqual(id('10.231.0.5'), id('10.231.0.200'), 'inside the except: another');
	assert.deepEqual(c.identityLabels.get(id('10.231.0.5')), c.identityLabels.get(id('10.231.1.5')), 'both carry the same labels for flows');
	const zd = podIp(4);
	assert.equal(modelAllows(c, '10.231.0.5', zd, IPPROTO.TCP, 80), true);
	assert.equal(modelAllows(c, '10.231.1.5', zd, IPPROTO.TCP, 80), false);
	assert.equal(modelAllows(c, '10.231.0.200', zd, IPPROTO.TCP, 80), false);
	// A podSelector rule still selects all three: the split identities keep their labels.
	const bySelector = compile({
		pods: [...pods, inside, outside, excepted],
		namespaces: NAMESPACES,
		policies: [
			policy,
			{
				metadata: { namespace: 'z', name: 'from-b' },
				spec: { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'b' } } }] }] },
			},
		],
		nodes: [],
		localNode: 'n1',
		endpointIds,
		identities: new IdentityAllocator(),
		rules: new RuleIdAllocator(),
	});
	for (const ip of ['10.231.0.5', '10.231.1.5', '10.231.0.200']) assert.equal(modelAllows(bySelector, ip, zd, IPPROTO.TCP, 80), true, ip);
});

test('identities stay stable across recompiles; rule ids name their policy', () => {
	const identities = new IdentityAllocator();
	const rules = new RuleIdAllocator();
	const pol: NetworkPolicy = {
		metadata: { namespace: 'x', name: 'web' },
		spec: { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }, { ports: [{ port: 81 }] }] },
	};
	const run = (ps: PodInfo[]) => compile({ pods: ps, namespaces: NAMESPACES, policies: [pol], nodes: [], localNode: 'n1', endpointIds, identities, rules });
	const first = run(pods);
	const second = run([...pods].reverse());
	assert.deepEqual([...second.ipcache].sort(), [...first.ipcache].sort());
	const r = [...first.rules.values()].map((x) => `${x.namespace}/${x.name} ${x.direction}[${x.index}]`).sort();
	assert.deepEqual(r, ['x/web ingress[0]', 'x/web ingress[1]']);
	assert.deepEqual(toTrie(second.entries).size, toTrie(first.entries).size);
});

test('policyTypes are inferred as the API server does', () => {
	const p = (spec: object): NetworkPolicy => ({ spec: { podSelector: {}, ...spec } }) as NetworkPolicy;
	assert.equal(policyAffects(p({}), 'ingress'), true);
	assert.equal(policyAffects(p({}), 'egress'), false);
	assert.equal(policyAffects(p({ egress: [{}] }), 'egress'), true);
	assert.equal(policyAffects(p({ egress: [] }), 'egress'), false);
	assert.equal(policyAffects(p({ policyTypes: ['Egress'] }), 'ingress'), false);
});

test('label selectors: every operator, and unknown operators refused', () => {
	const l = { app: 'a', tier: 'web' };
	assert.ok(selectorMatches({}, l));
	assert.ok(selectorMatches({ matchLabels: { app: 'a' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['web', 'db'] }] }, l));
	assert.ok(!selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['web'] }] }, l));
	assert.ok(selectorMatches({ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['x'] }] }, l));
	assert.ok(selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, l));
	assert.ok(!selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, l));
	assert.throws(() => selectorMatches({ matchExpressions: [{ key: 'k', operator: 'Near' }] }, l), /unknown label selector operator 'Near'/);
});

test('bad policies are reported, not guessed at', () => {
	const c = compileCase([
		{ metadata: { namespace: 'x', name: 'bad-cidr' }, spec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/40' } }] }] } },
		{ metadata: { namespace: 'x', name: 'bad-proto' }, spec: { podSelector: {}, ingress: [{ ports: [{ protocol: 'ICMP', port: 1 }] }] } },
	]);
	assert.deepEqual(c.problems.map((p) => p.policy).sort(), ['x/bad-cidr', 'x/bad-proto'], 'one report per broken rule');
	// Still isolating (fail closed): the selected pods are isolated, the broken rule admits nothing.
	assert.equal(c.endpoints.get('10.230.0.10')!.flags & EndpointFlags.IngressIsolated, EndpointFlags.IngressIsolated);
});

test('a compile that reuses per-policy results equals a fresh compile, case after case', () => {
	const cache = new CompileCache(true);
	const identities = new IdentityAllocator();
	const rules = new RuleIdAllocator();
	const norm = (c: ReturnType<typeof compile>): string[] => [...toTrie(c.entries).keys()].sort();
	let reused = 0;
	const cases = generateCases();
	for (let i = 0; i < cases.length; i++) {
		// Every other step keeps the previous case's policies and adds the next one's.
		const policies = (i % 2 ? [...cases[i - 1]!.policies, ...cases[i]!.policies] : cases[i]!.policies) as NetworkPolicy[];
		const base = { pods, namespaces: NAMESPACES, policies, nodes: [], localNode: 'n1', endpointIds, identities, rules };
		const before = cache.policies.size;
		const cached = compile({ ...base, cache });
		if (i % 2 && before > 0) reused++;
		const fresh = compile(base);
		assert.deepEqual(norm(cached), norm(fresh), cases[i]!.name);
		assert.deepEqual(
			[...cached.endpoints.values()].map((e) => e.flags),
			[...fresh.endpoints.values()].map((e) => e.flags),
		);
	}
	assert.ok(reused > 10);
});

describe('the compiler flags meshed endpoints and meshed addresses', () => {
	const mpod = (namespace: string, name: string, ip: string, nodeName = 'n1', annotations?: Record<string, string>): PodInfo => ({
		namespace,
		name,
		labels: { app: name },
		ips: [ip],
		nodeName,
		ports: [],
		...(annotations ? { annotations } : {}),
	});
	// New objects on every call, as informers replace a changed pod.
	const pods = (annotations?: Record<string, string>): PodInfo[] => [
		mpod('a', 'web', '10.0.0.1', 'n1', annotations),
		mpod('b', 'db', '10.0.0.2'),
		mpod('kube-system', 'dns', '10.0.0.3'),
		mpod('a', 'remote', '10.0.1.1', 'n2'),
	];
	const endpointIds = new Map([
		['a/web', 1],
		['b/db', 2],
		['kube-system/dns', 3],
	]);
	const identities = new IdentityAllocator();
	const rules = new RuleIdAllocator();
	const cache = new CompileCache();
	const run = (p: PodInfo[], namespaces: NamespaceInfo[], mesh?: boolean) =>
		compile({
			pods: p,
			namespaces,
			policies: [],
			nodes: [{ name: 'n1', ips: ['192.168.255.1'] }],
			localNode: 'n1',
			endpointIds,
			identities,
			rules,
			cache,
			...(mesh === undefined ? {} : { mesh }),
		});
	const flags = (c: ReturnType<typeof run>): Record<string, number> =>
		Object.fromEntries([...c.endpoints.values()].map((e) => [`${e.namespace}/${e.pod}`, e.flags]));
	/** the ipcache prefixes flagged meshed */
	const meshedAddrs = (c: ReturnType<typeof run>): string[] =>
		[...c.ipcacheFlags]
			.filter(([, f]) => f & IpcacheFlags.Meshed)
			.map(([p]) => p)
			.sort();
	const ns = (a: Record<string, string>, ks: Record<string, string> = {}): NamespaceInfo[] => [
		{ name: 'a', labels: a },
		{ name: 'b', labels: {} },
		{ name: 'kube-system', labels: ks },
	];

	test('a namespace label turns the flag on and off (one cache across the compiles, as the agent keeps it)', () => {
		const plain = pods();
		const off = run(plain, ns({}));
		assert.deepEqual(flags(off), { 'a/web': 0, 'b/db': 0, 'kube-system/dns': 0 });
		assert.deepEqual(meshedAddrs(off), []);
		const on = run(plain, ns({ [MESH_KEY]: 'enabled' }, { [MESH_KEY]: 'enabled' }));
		assert.deepEqual(flags(on), { 'a/web': EndpointFlags.Meshed, 'b/db': 0, 'kube-system/dns': 0 }, 'kube-system stays out whatever its labels');
		assert.deepEqual(meshedAddrs(on), ['10.0.0.1/32', '10.0.1.1/32'], "every meshed pod's address, this node's and another's");
		assert.deepEqual(on.endpoints.get('10.0.0.1')!.mesh, { meshed: true, reason: 'namespace label weir.io/mesh=enabled' });
		assert.equal(run(plain, ns({ [ISTIO_DATAPLANE_MODE]: 'ambient' })).endpoints.get('10.0.0.1')!.flags, EndpointFlags.Meshed);
		const again = run(plain, ns({}));
		assert.deepEqual(flags(again), { 'a/web': 0, 'b/db': 0, 'kube-system/dns': 0 }, 'label removed: flag cleared');
		assert.deepEqual(meshedAddrs(again), []);
	});

	test('a pod annotation opts out of a meshed namespace, and back in (a changed pod object is a world change)', () => {
		const meshedNs = ns({ [MESH_KEY]: 'enabled' });
		assert.equal(run(pods(), meshedNs).endpoints.get('10.0.0.1')!.flags, EndpointFlags.Meshed);
		const out = run(pods({ [MESH_KEY]: 'disabled' }), meshedNs);
		assert.equal(out.endpoints.get('10.0.0.1')!.flags, 0);
		assert.match(out.endpoints.get('10.0.0.1')!.mesh.reason, /annotation/);
		assert.deepEqual(meshedAddrs(out), ['10.0.1.1/32'], 'its address is no longer a meshed destination either');
		assert.equal(run(pods(), meshedNs).endpoints.get('10.0.0.1')!.flags, EndpointFlags.Meshed);
		// A single pod opts in where its namespace does not.
		assert.equal(run(pods({ [MESH_KEY]: 'enabled' }), ns({})).endpoints.get('10.0.0.1')!.flags, EndpointFlags.Meshed);
	});

	test('the flag sits beside the isolation flags', () => {
		const c = compile({
			pods: pods(),
			namespaces: ns({ [MESH_KEY]: 'enabled' }),
			policies: [{ metadata: { namespace: 'a', name: 'deny' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } }],
			nodes: [],
			localNode: 'n1',
			endpointIds,
			identities: new IdentityAllocator(),
			rules: new RuleIdAllocator(),
		});
		assert.equal(c.endpoints.get('10.0.0.1')!.flags, EndpointFlags.Meshed | EndpointFlags.IngressIsolated);
	});

	test('mesh off: no endpoint and no address is meshed, whatever the labels', () => {
		const c = run(pods({ [MESH_KEY]: 'enabled' }), ns({ [MESH_KEY]: 'enabled' }), false);
		assert.deepEqual(flags(c), { 'a/web': 0, 'b/db': 0, 'kube-system/dns': 0 });
		assert.deepEqual(meshedAddrs(c), []);
		assert.equal(c.endpoints.get('10.0.0.1')!.mesh.reason, 'mesh disabled on this node');
	});
});

describe('PeerAuthentication makes meshed endpoints STRICT (their ports too)', () => {
	// a/web and a/api are meshed (namespace label), a/legacy opts out; b/db is in a plain namespace.
	const pod = (namespace: string, name: string, ip: string, annotations?: Record<string, string>): PodInfo => ({
		namespace,
		name,
		labels: { app: name },
		ips: [ip],
		nodeName: 'n1',
		ports: [],
		...(annotations ? { annotations } : {}),
	});
	const pods = [
		pod('a', 'web', '10.0.0.1'),
		pod('a', 'api', '10.0.0.2'),
		pod('a', 'legacy', '10.0.0.3', { [MESH_KEY]: 'disabled' }),
		pod('b', 'db', '10.0.0.4'),
	];
	const endpointIds = new Map([
		['a/web', 1],
		['a/api', 2],
		['a/legacy', 3],
		['b/db', 4],
	]);
	const namespaces: NamespaceInfo[] = [
		{ name: 'a', labels: { [MESH_KEY]: 'enabled' } },
		{ name: 'b', labels: {} },
	];
	const cache = new CompileCache();
	const identities = new IdentityAllocator();
	const rules = new RuleIdAllocator();
	const run = (peerAuthentications: unknown[] | undefined, extra: { mesh?: boolean; rootNamespace?: string } = {}) =>
		compile({
			pods,
			namespaces,
			policies: [],
			nodes: [],
			localNode: 'n1',
			endpointIds,
			identities,
			rules,
			cache,
			...(peerAuthentications ? { peerAuthentications } : {}),
			...extra,
		});
	const pa = (namespace: string, name: string, spec: unknown, created = '2026-01-01T00:00:00Z') => ({
		apiVersion: 'security.istio.io/v1',
		kind: 'PeerAuthentication',
		metadata: { namespace, name, creationTimestamp: created },
		spec,
	});
	const M = EndpointFlags.Meshed;
	const S = EndpointFlags.MtlsStrict;
	const P = EndpointFlags.MtlsPorts;
	const flags = (c: ReturnType<typeof run>): Record<string, number> =>
		Object.fromEntries([...c.endpoints.values()].map((e) => [`${e.namespace}/${e.pod}`, e.flags]));

	test('none (no objects, the CRD absent): no flag, PERMISSIVE from no policy', () => {
		for (const c of [run(undefined), run([])]) {
			assert.deepEqual(flags(c), { 'a/web': M, 'a/api': M, 'a/legacy': 0, 'b/db': 0 });
			assert.deepEqual(c.endpoints.get('10.0.0.1')!.mtls, { mode: 'PERMISSIVE', ports: new Map() });
			assert.equal(c.endpoints.get('10.0.0.3')!.mtls, undefined, 'no mode applies to a pod that is not meshed');
			assert.deepEqual(c.mtlsPorts, new Map());
		}
	});

	test('namespace-wide STRICT flags its meshed pods only, names the policy, and is cleared when the policy goes', () => {
		const c = run([pa('a', 'strict', { mtls: { mode: 'STRICT' } })]);
		assert.deepEqual(flags(c), { 'a/web': M | S, 'a/api': M | S, 'a/legacy': 0, 'b/db': 0 }, 'the opted-out pod is not STRICT');
		assert.deepEqual(c.endpoints.get('10.0.0.1')!.mtls, { mode: 'STRICT', policy: 'a/strict', ports: new Map() });
		assert.deepEqual(flags(run([])), { 'a/web': M, 'a/api': M, 'a/legacy': 0, 'b/db': 0 }, 'removed: cleared');
	});

	test('mesh-wide STRICT in the root namespace (weir-system unless configured) reaches meshed pods of every namespace', () => {
		const mesh = pa('weir-system', 'default', { mtls: { mode: 'STRICT' } });
		assert.deepEqual(flags(run([mesh])), { 'a/web': M | S, 'a/api': M | S, 'a/legacy': 0, 'b/db': 0 });
		assert.deepEqual(
			flags(run([mesh], { rootNamespace: 'istio-system' })),
			{ 'a/web': M, 'a/api': M, 'a/legacy': 0, 'b/db': 0 },
			'not the root namespace: it covers only weir-system',
		);
		assert.deepEqual(flags(run([pa('istio-system', 'default', { mtls: { mode: 'STRICT' } })], { rootNamespace: 'istio-system' })), {
			'a/web': M | S,
			'a/api': M | S,
			'a/legacy': 0,
			'b/db': 0,
		});
	});

	test('precedence through mtlsMode: a workload PERMISSIVE or DISABLE under a STRICT namespace is not STRICT', () => {
		const c = run([
			pa('a', 'strict', { mtls: { mode: 'STRICT' } }),
			pa('a', 'api-open', { selector: { matchLabels: { app: 'api' } }, mtls: { mode: 'DISABLE' } }),
			pa('weir-system', 'default', { mtls: { mode: 'PERMISSIVE' } }),
		]);
		assert.deepEqual(flags(c), { 'a/web': M | S, 'a/api': M, 'a/legacy': 0, 'b/db': 0 });
		assert.equal(c.endpoints.get('10.0.0.2')!.mtls!.policy, 'a/api-open');
	});

	test('portLevelMtls: a PERMISSIVE port under STRICT and a STRICT port under PERMISSIVE become weir_mtls_ports entries; a port the same as its workload does not', () => {
		const c = run([
			pa('a', 'strict', { mtls: { mode: 'STRICT' } }),
			pa('a', 'web-ports', { selector: { matchLabels: { app: 'web' } }, portLevelMtls: { 8080: { mode: 'PERMISSIVE' }, 9090: { mode: 'STRICT' } } }),
			pa('a', 'api-ports', { selector: { matchLabels: { app: 'api' } }, mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { 6379: { mode: 'STRICT' } } }),
		]);
		assert.deepEqual(flags(c), { 'a/web': M | S | P, 'a/api': M | P, 'a/legacy': 0, 'b/db': 0 });
		assert.deepEqual(
			c.mtlsPorts,
			new Map([
				['1:8080', MtlsPortMode.Permissive],
				['2:6379', MtlsPortMode.Strict],
			]),
		);
		assert.deepEqual(c.endpoints.get('10.0.0.1')!.mtls!.ports.get(9090), { mode: 'STRICT', policy: 'a/web-ports' }, 'kept for flows, no entry');
		// The entries go with the policy.
		const again = run([pa('a', 'strict', { mtls: { mode: 'STRICT' } })]);
		assert.deepEqual(again.mtlsPorts, new Map());
		assert.deepEqual(flags(again), { 'a/web': M | S, 'a/api': M | S, 'a/legacy': 0, 'b/db': 0 });
	});

	test('what cannot be read is STRICT (fail closed), with a problem naming the policy', () => {
		const c = run([pa('a', 'typo', { mtls: { mode: 'STRIKT' } })]);
		assert.deepEqual(flags(c), { 'a/web': M | S, 'a/api': M | S, 'a/legacy': 0, 'b/db': 0 });
		assert.deepEqual(
			c.mtlsProblems.map((p) => p.policy),
			['a/typo'],
		);
		assert.deepEqual(c.problems, [], 'not a NetworkPolicy problem');
	});

	test('mesh off on the node: nothing is meshed, so nothing is STRICT', () => {
		const c = run([pa('a', 'strict', { mtls: { mode: 'STRICT' } })], { mesh: false });
		assert.deepEqual(flags(c), { 'a/web': 0, 'a/api': 0, 'a/legacy': 0, 'b/db': 0 });
		assert.deepEqual(c.mtlsPorts, new Map());
	});
});
