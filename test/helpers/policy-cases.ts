// NetworkPolicy conformance cases: a fixed small world (namespaces, pods with named
// ports, one host outside the cluster) and a generator of policy sets covering every
// feature of networking.k8s.io/v1, alone and combined.
import { RefPeer, RefPod, RefPolicy, RefPort, RefSelector, RefWorld } from './policy-reference.js';

export const EXTERNAL_IP = '203.0.113.10'; // TEST-NET-3: "outside the cluster"

export const NAMESPACES: Array<{ name: string; labels: Record<string, string> }> = [
	{ name: 'x', labels: { team: 'a', env: 'prod' } },
	{ name: 'y', labels: { team: 'b' } },
	{ name: 'z', labels: { env: 'dev' } },
];

/** Pod i's address in every test of these cases (ipBlock cases select some of them). */
export function podIp(i: number): string {
	return `10.230.0.${10 + i}`;
}

/** Pods; ips are podIp(index). */
export const PODS: Array<Omit<RefPod, 'ip'>> = [
	{
		namespace: 'x',
		name: 'a',
		labels: { app: 'a', tier: 'web' },
		ports: [
			{ name: 'http', containerPort: 80 },
			{ name: 'dns', containerPort: 53, protocol: 'UDP' },
		],
	},
	{ namespace: 'x', name: 'b', labels: { app: 'b', tier: 'db' }, ports: [{ name: 'http', containerPort: 8080 }] },
	{
		namespace: 'y',
		name: 'a',
		labels: { app: 'a' },
		ports: [
			{ name: 'http', containerPort: 80 },
			{ name: 'dns', containerPort: 53, protocol: 'UDP' },
		],
	},
	{ namespace: 'y', name: 'c', labels: { app: 'c', tier: 'web' }, ports: [{ name: 'http', containerPort: 81 }] },
	{ namespace: 'z', name: 'd', labels: { app: 'd', tier: 'db' }, ports: [] },
];

/** What every server listens on (TCP and UDP each), and what is probed. */
export const SERVED_PORTS = [53, 80, 81, 8080];
export const PROBES: Array<{ proto: 'TCP' | 'UDP'; port: number }> = [
	{ proto: 'TCP', port: 80 },
	{ proto: 'TCP', port: 81 },
	{ proto: 'TCP', port: 8080 },
	{ proto: 'UDP', port: 53 },
];

export interface PolicyCase {
	name: string;
	policies: RefPolicy[];
}

let seq = 0;
function pol(ns: string, spec: NonNullable<RefPolicy['spec']>, name?: string): RefPolicy {
	return { metadata: { namespace: ns, name: name ?? `p${seq++}` }, spec };
}

const sel = (matchLabels: Record<string, string>): RefSelector => ({ matchLabels });
const expr = (key: string, operator: string, values?: string[]): RefSelector => ({
	matchExpressions: [{ key, operator, ...(values ? { values } : {}) }],
});

const PEERS: Array<[string, RefPeer[] | undefined]> = [
	['all (missing)', undefined],
	['all (empty list)', []],
	['podSelector {}', [{ podSelector: {} }]],
	['podSelector app=a', [{ podSelector: sel({ app: 'a' }) }]],
	['podSelector tier In [web]', [{ podSelector: expr('tier', 'In', ['web']) }]],
	['podSelector tier NotIn [web]', [{ podSelector: expr('tier', 'NotIn', ['web']) }]],
	['podSelector tier Exists', [{ podSelector: expr('tier', 'Exists') }]],
	['podSelector tier DoesNotExist', [{ podSelector: expr('tier', 'DoesNotExist') }]],
	['namespaceSelector {}', [{ namespaceSelector: {} }]],
	['namespaceSelector team=b', [{ namespaceSelector: sel({ team: 'b' }) }]],
	['namespaceSelector env In [prod,dev]', [{ namespaceSelector: expr('env', 'In', ['prod', 'dev']) }]],
	['namespaceSelector team DoesNotExist', [{ namespaceSelector: expr('team', 'DoesNotExist') }]],
	['ns team=b AND pod tier=web', [{ namespaceSelector: sel({ team: 'b' }), podSelector: sel({ tier: 'web' }) }]],
	['ns {} AND pod app=a', [{ namespaceSelector: {}, podSelector: sel({ app: 'a' }) }]],
	['ns team=b OR pod tier=web', [{ namespaceSelector: sel({ team: 'b' }) }, { podSelector: sel({ tier: 'web' }) }]],
	['ipBlock 203.0.113.0/24', [{ ipBlock: { cidr: '203.0.113.0/24' } }]],
	['ipBlock 203.0.113.0/24 except 203.0.113.8/29', [{ ipBlock: { cidr: '203.0.113.0/24', except: ['203.0.113.8/29'] } }]],
	['ipBlock 0.0.0.0/0 (pods too)', [{ ipBlock: { cidr: '0.0.0.0/0' } }]],
	['ipBlock of pod addresses except y/a and y/c', [{ ipBlock: { cidr: '10.230.0.0/24', except: ['10.230.0.12/31'] } }]],
	['ipBlock of x/b alone', [{ ipBlock: { cidr: '10.230.0.11/32' } }]],
	['ipBlock OR podSelector app=b', [{ ipBlock: { cidr: '203.0.113.0/28' } }, { podSelector: sel({ app: 'b' }) }]],
];

const PORTS: Array<[string, RefPort[] | undefined]> = [
	['all ports (missing)', undefined],
	['all ports (empty)', []],
	['TCP 80', [{ protocol: 'TCP', port: 80 }]],
	['port 80, protocol defaulted', [{ port: 80 }]],
	['UDP 53', [{ protocol: 'UDP', port: 53 }]],
	['TCP 80-81 (endPort)', [{ protocol: 'TCP', port: 80, endPort: 81 }]],
	['TCP 81-9000 (endPort)', [{ protocol: 'TCP', port: 81, endPort: 9000 }]],
	['named http', [{ protocol: 'TCP', port: 'http' }]],
	['named dns/UDP', [{ protocol: 'UDP', port: 'dns' }]],
	['every UDP port', [{ protocol: 'UDP' }]],
	['SCTP 80 only', [{ protocol: 'SCTP', port: 80 }]],
	[
		'TCP 8080 or UDP 53',
		[
			{ protocol: 'TCP', port: 8080 },
			{ protocol: 'UDP', port: 53 },
		],
	],
];

const TARGETS: Array<[string, string, RefSelector]> = [
	['x', 'all pods of x', {}],
	['x', 'x app=a', sel({ app: 'a' })],
	['y', 'y tier=web', sel({ tier: 'web' })],
	['y', 'all pods of y', {}],
	['z', 'all pods of z', {}],
];

/** The hand-picked cases: idioms and the corners of the API. */
function idioms(): PolicyCase[] {
	return [
		{ name: 'no policy: everything connects', policies: [] },
		{ name: 'default-deny ingress in x', policies: [pol('x', { podSelector: {}, policyTypes: ['Ingress'] })] },
		{ name: 'default-deny egress in x', policies: [pol('x', { podSelector: {}, policyTypes: ['Egress'] })] },
		{ name: 'default-deny both in y', policies: [pol('y', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })] },
		{ name: 'allow-all ingress in x', policies: [pol('x', { podSelector: {}, ingress: [{}] })] },
		{ name: 'allow-all egress in x', policies: [pol('x', { podSelector: {}, policyTypes: ['Egress'], egress: [{}] })] },
		{
			name: 'default-deny ingress plus allow-all ingress in x (union)',
			policies: [pol('x', { podSelector: {}, policyTypes: ['Ingress'] }), pol('x', { podSelector: {}, ingress: [{}] })],
		},
		{
			name: 'policyTypes inferred: egress rules make it Ingress+Egress',
			policies: [pol('x', { podSelector: sel({ app: 'a' }), egress: [{ ports: [{ port: 80 }] }] })],
		},
		{
			name: 'policyTypes [Egress] ignores ingress rules',
			policies: [pol('y', { podSelector: {}, policyTypes: ['Egress'], ingress: [{}], egress: [{ to: [{ podSelector: {} }] }] })],
		},
		{
			name: 'policyTypes [Ingress] ignores egress rules',
			policies: [pol('y', { podSelector: {}, policyTypes: ['Ingress'], egress: [{ to: [] }], ingress: [{ from: [{ podSelector: {} }] }] })],
		},
		{ name: 'empty ingress list: deny all ingress', policies: [pol('z', { podSelector: {}, ingress: [] })] },
		{
			name: 'two policies select one pod: union of their rules',
			policies: [
				pol('x', { podSelector: sel({ app: 'a' }), ingress: [{ from: [{ podSelector: sel({ app: 'b' }) }], ports: [{ port: 80 }] }] }),
				pol('x', {
					podSelector: sel({ tier: 'web' }),
					ingress: [{ from: [{ namespaceSelector: sel({ team: 'b' }) }], ports: [{ protocol: 'UDP', port: 53 }] }],
				}),
			],
		},
		{
			name: 'segregation: z admits only x, and sends only to x',
			policies: [
				pol('z', {
					podSelector: {},
					policyTypes: ['Ingress', 'Egress'],
					ingress: [{ from: [{ namespaceSelector: sel({ team: 'a' }) }] }],
					egress: [{ to: [{ namespaceSelector: sel({ team: 'a' }) }] }],
				}),
			],
		},
		{
			name: 'egress named port resolves on the destination pods',
			policies: [pol('y', { podSelector: sel({ app: 'a' }), policyTypes: ['Egress'], egress: [{ ports: [{ port: 'http' }] }] })],
		},
		{
			name: 'egress to ipBlock with except, and ingress from it',
			policies: [
				pol('x', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '203.0.113.0/24', except: ['203.0.113.0/28'] } }] }] }),
				pol('y', { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '203.0.113.0/28' } }] }] }),
			],
		},
		{
			name: 'nested ipBlocks across policies keep longest-prefix semantics',
			policies: [
				pol('x', { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '203.0.0.0/16', except: ['203.0.113.0/24'] } }] }] }),
				pol('y', { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '203.0.113.8/30' } }] }] }),
				pol('z', { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '203.0.113.0/24', except: ['203.0.113.0/29'] } }] }] }),
			],
		},
		{
			name: 'ipBlock selects pods by address, and an except inside it splits pods of one namespace',
			policies: [
				pol('x', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.230.0.8/29', except: ['10.230.0.12/32'] } }] }] }),
				pol('z', { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.230.0.10/31' } }, { ipBlock: { cidr: EXTERNAL_IP + '/32' } }] }] }),
			],
		},
		{
			name: 'egress allow-all in one policy, deny-all in another (union allows)',
			policies: [pol('y', { podSelector: {}, policyTypes: ['Egress'] }), pol('y', { podSelector: sel({ app: 'a' }), policyTypes: ['Egress'], egress: [{}] })],
		},
	];
}

/** Deterministic pseudo-random pick. */
function rng(seed: number): () => number {
	let s = seed;
	return () => {
		s = (s * 1103515245 + 12345) % 2147483648;
		return s / 2147483648;
	};
}

/** At least `count` cases: the idioms, then every peer kind and port kind in both directions, then random combinations. */
export function generateCases(count = 72): PolicyCase[] {
	seq = 0;
	const cases = idioms();
	PEERS.forEach(([pname, peers], i) => {
		const [ns, tname, target] = TARGETS[i % TARGETS.length]!;
		const ports = PORTS[i % PORTS.length]!;
		cases.push({
			name: `ingress ${tname} from ${pname}, ${ports[0]}`,
			policies: [pol(ns, { podSelector: target, ingress: [{ ...(peers ? { from: peers } : {}), ...(ports[1] ? { ports: ports[1] } : {}) }] })],
		});
	});
	PORTS.forEach(([qname, ports], i) => {
		const [ns, tname, target] = TARGETS[(i + 2) % TARGETS.length]!;
		const peers = PEERS[(i * 5) % PEERS.length]!;
		cases.push({
			name: `egress ${tname} to ${peers[0]}, ${qname}`,
			policies: [pol(ns, { podSelector: target, policyTypes: ['Egress'], egress: [{ ...(peers[1] ? { to: peers[1] } : {}), ...(ports ? { ports } : {}) }] })],
		});
	});
	const r = rng(7);
	const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
	while (cases.length < count) {
		const policies: RefPolicy[] = [];
		const n = 1 + Math.floor(r() * 3);
		const names: string[] = [];
		for (let k = 0; k < n; k++) {
			const [ns, tname, target] = pick(TARGETS);
			const [pname, peers] = pick(PEERS);
			const [qname, ports] = pick(PORTS);
			const dir = pick(['ingress', 'egress', 'both'] as const);
			const rule = (key: 'from' | 'to') => ({ ...(peers ? { [key]: peers } : {}), ...(ports ? { ports } : {}) });
			const types = dir === 'both' ? ['Ingress', 'Egress'] : dir === 'ingress' ? ['Ingress'] : ['Egress'];
			policies.push(
				pol(ns, {
					podSelector: target,
					policyTypes: types,
					...(dir !== 'egress' ? { ingress: [rule('from')] } : {}),
					...(dir !== 'ingress' ? { egress: [rule('to')] } : {}),
				}),
			);
			names.push(`${dir} ${tname} / ${pname} / ${qname}`);
		}
		cases.push({ name: `combo: ${names.join(' + ')}`, policies });
	}
	return cases;
}

export function worldFor(pods: RefPod[], policies: RefPolicy[]): RefWorld {
	return { namespaces: NAMESPACES, pods, policies };
}
