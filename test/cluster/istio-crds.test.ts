// Istio's security CRDs against a real kube-apiserver (control-plane mode): weir-controller
// (in-process, as its own ServiceAccount with deploy/base/'s RBAC) creates the
// AuthorizationPolicy CRD that is absent, exactly as vendored, after which the API server
// validates and serves AuthorizationPolicy objects that the ztunnel's compiler reads; the
// PeerAuthentication CRD made beforehand with other content (another install's) is left
// untouched. A second start changes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import pino from 'pino';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { readFileSync } from 'node:fs';
import { clusterStatus, startCluster } from '../../hack/cluster/cluster.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { buildController } from '../../src/controller/app.js';
import { ISTIO_CRDS_FILE } from '../../src/controller/crds.js';
import { repoRoot } from '../../src/shared/package.js';
import { testControllerConfig, tokenKubeconfig } from '../helpers/controller.js';
import { compileAuthorizationPolicies, evaluate } from '../../src/ztunnel/authz.js';

const NAME = 'zcrd';
const NS = 'weir-system';
const AP = 'authorizationpolicies.security.istio.io';
const PA = 'peerauthentications.security.istio.io';

test('Istio CRDs with a real API server: the absent one created as vendored, an existing one untouched', { timeout: 240_000 }, async (t) => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	const c = await startCluster({ name: NAME, mode: 'control-plane', log: (m) => t.diagnostic(m) });
	const pids: number[] = [];
	try {
		pids.push(...clusterStatus(NAME).processes.map((p) => p.pid));
		const admin = new k8s.KubeConfig();
		admin.loadFromFile(c.kubeconfig);
		const ext = admin.makeApiClient(k8s.ApiextensionsV1Api);
		await c.kubectl([
			'apply',
			'-f',
			join(repoRoot, 'deploy/base/namespace.yaml'),
			'-f',
			join(repoRoot, 'deploy/base/controller.yaml'),
			'-f',
			join(repoRoot, 'deploy/base/crds.yaml'),
		]);
		await admin.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: 'd-redis' } } });

		// Another install's PeerAuthentication CRD: v1beta1 only, any object accepted.
		await ext.createCustomResourceDefinition({
			body: {
				metadata: { name: PA, labels: { owner: 'someone-else' } },
				spec: {
					group: 'security.istio.io',
					scope: 'Namespaced',
					names: { kind: 'PeerAuthentication', plural: 'peerauthentications', singular: 'peerauthentication', listKind: 'PeerAuthenticationList' },
					versions: [
						{ name: 'v1beta1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } } },
					],
				},
			},
		});
		const before = await ext.readCustomResourceDefinition({ name: PA });

		// weir-controller as its own ServiceAccount, with deploy/'s RBAC only.
		const token = (
			await admin
				.makeApiClient(k8s.CoreV1Api)
				.createNamespacedServiceAccountToken({ namespace: NS, name: 'weir-controller', body: { spec: { audiences: [], expirationSeconds: 600 } } })
		).status!.token;
		const kubeconfig = tokenKubeconfig(admin, 'weir-controller', token, join(c.dir, 'weir-controller.kubeconfig'));

		const lines: Array<{ level: number; msg: string; component?: string }> = [];
		const log = pino({ level: 'info', base: {} }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });
		const ctrl = await buildController(testControllerConfig(kubeconfig, { istioCrdsFile: ISTIO_CRDS_FILE }), log);
		await ctrl.start();
		const outcome = await Promise.race([
			ctrl.istioCrds,
			new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`no CRD outcome in 30 s: ${JSON.stringify(lines)}`)), 30_000)),
		]);
		await ctrl.stop();
		t.diagnostic(
			`controller: ${lines
				.filter((l) => l.component === 'crds')
				.map((l) => l.msg)
				.join(' | ')}`,
		);
		assert.deepEqual(
			outcome.map((o) => [o.name, o.created]),
			[
				[AP, true],
				[PA, false],
			],
		);
		assert.deepEqual(outcome[1]!.served, ['v1beta1']);
		assert.ok(lines.some((l) => l.msg === `created CRD ${AP} from istio.io/api@${/istio\.io\/api@(\S+)/.exec(readFileSync(ISTIO_CRDS_FILE, 'utf8'))![1]}`));
		assert.ok(lines.some((l) => l.level === 40 && l.msg === `CRD ${PA} exists but does not serve v1, which the ztunnel reads: left as it is`));

		// The created CRD is Istio's as vendored (schema, validation rules, versions).
		const vendored = parseAllDocuments(readFileSync(ISTIO_CRDS_FILE, 'utf8')).map((d) => d.toJS() as { spec: { versions: unknown; names: unknown } });
		const got = await c.kubectl(['get', 'crd', AP, '-o', 'json']);
		const created = JSON.parse(got.stdout) as { metadata: { labels: Record<string, string> }; spec: { versions: unknown; names: unknown } };
		assert.deepEqual(created.spec.versions, vendored[0]!.spec.versions);
		assert.deepEqual(created.spec.names, vendored[0]!.spec.names);
		assert.equal(created.metadata.labels['app'], 'istio-pilot');
		// The existing one is untouched.
		const after = await ext.readCustomResourceDefinition({ name: PA });
		assert.equal(after.metadata?.resourceVersion, before.metadata?.resourceVersion, 'PeerAuthentication CRD not written');
		assert.deepEqual(after.metadata?.labels, { owner: 'someone-else' });
		assert.deepEqual(
			after.spec.versions.map((v) => v.name),
			['v1beta1'],
		);

		// The API server now serves AuthorizationPolicy (v1 and v1beta1) with Istio's schema.
		await waitEstablished(ext, AP);
		const co = admin.makeApiClient(k8s.CustomObjectsApi);
		const policy = (version: string, name: string, spec: unknown): Parameters<typeof co.createNamespacedCustomObject>[0] => ({
			group: 'security.istio.io',
			version,
			namespace: 'd-redis',
			plural: 'authorizationpolicies',
			body: { apiVersion: `security.istio.io/${version}`, kind: 'AuthorizationPolicy', metadata: { name }, spec },
		});
		await co.createNamespacedCustomObject(
			policy('v1', 'allow-app', {
				selector: { matchLabels: { app: 'redis' } },
				rules: [{ from: [{ source: { principals: ['cluster.local/ns/c-app/sa/app'] } }], to: [{ operation: { ports: ['6379'] } }] }],
			}),
		);
		await co.createNamespacedCustomObject(policy('v1beta1', 'deny-apache', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['b-apache'] } }] }] }));
		await assert.rejects(
			co.createNamespacedCustomObject(policy('v1', 'bad-action', { action: 'MAYBE' })),
			(err: unknown) => (err as { code?: number }).code === 422,
			'Istio’s schema is enforced: an unknown action is refused',
		);
		const listed = (await co.listNamespacedCustomObject({
			group: 'security.istio.io',
			version: 'v1',
			namespace: 'd-redis',
			plural: 'authorizationpolicies',
		})) as { items: unknown[] };
		assert.equal(listed.items.length, 2);
		const compiled = compileAuthorizationPolicies(listed.items, { rootNamespace: NS, trustDomain: 'cluster.local' });
		assert.deepEqual(compiled.problems, []);
		const to = { namespace: 'd-redis', labels: { app: 'redis' }, ip: '10.0.2.7', port: 6379 };
		assert.equal(evaluate(compiled, { source: { identity: 'spiffe://cluster.local/ns/c-app/sa/app', ip: '10.0.1.5' }, destination: to }).allowed, true);
		assert.equal(
			evaluate(compiled, { source: { identity: 'spiffe://cluster.local/ns/b-apache/sa/apache', ip: '10.0.1.6' }, destination: to }).policy,
			'd-redis/deny-apache',
		);

		// A second start: both exist, nothing is written.
		const rv = (await ext.readCustomResourceDefinition({ name: AP })).metadata?.resourceVersion;
		const again = await buildController(testControllerConfig(kubeconfig, { istioCrdsFile: ISTIO_CRDS_FILE }), pino({ level: 'silent' }));
		await again.start();
		const second = await again.istioCrds;
		await again.stop();
		assert.deepEqual(
			second.map((o) => o.created),
			[false, false],
		);
		assert.equal((await ext.readCustomResourceDefinition({ name: AP })).metadata?.resourceVersion, rv);
	} finally {
		const rep = await c.stop();
		assert.deepEqual(rep.left, []);
	}
	assert.deepEqual(await leftovers(NAME, pids), []);
});

async function waitEstablished(ext: k8s.ApiextensionsV1Api, name: string): Promise<void> {
	for (let i = 0; i < 100; i++) {
		const crd = await ext.readCustomResourceDefinition({ name });
		if (crd.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True')) return;
		await new Promise((r) => setTimeout(r, 100));
	}
	throw new Error(`${name} not Established in 10 s`);
}
