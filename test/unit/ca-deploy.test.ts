// deploy/base/ca.yaml: the workload CA's least-privilege RBAC (bound to weir-controller's
// ServiceAccount), the ztunnel's ServiceAccount, and the CA Service on the CA's port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CA_DEFAULTS } from '../../src/ca/ca.js';
import { caDnsNames } from '../../src/ca/server.js';
import { repoRoot } from '../../src/shared/package.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- free-form YAML, asserted field by field
type Manifest = Record<string, any>;

const read = (f: string): Manifest[] => parseAllDocuments(readFileSync(join(repoRoot, 'deploy', 'base', f), 'utf8')).map((d) => d.toJS() as Manifest);
const docs = read('ca.yaml');
const named = (kind: string, name: string): Manifest => {
	const d = docs.find((x) => x['kind'] === kind && x['metadata']['name'] === name);
	assert.ok(d, `${kind} ${name}`);
	return d;
};

test('deploy/base/ca.yaml is in the kustomization', () => {
	assert.match(readFileSync(join(repoRoot, 'deploy', 'base', 'kustomization.yaml'), 'utf8'), /^\s+- ca\.yaml$/m);
});

test('the CA may create TokenReviews, list pods, get only its root Secret, create, and update only the bundle', () => {
	assert.deepEqual(named('ClusterRole', 'weir-ca')['rules'], [
		{ apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
		{ apiGroups: [''], resources: ['pods'], verbs: ['list'] },
	]);
	const role = named('Role', 'weir-ca');
	assert.equal(role['metadata']['namespace'], 'weir-system');
	assert.deepEqual(role['rules'], [
		{ apiGroups: [''], resources: ['secrets'], resourceNames: [CA_DEFAULTS.rootSecret], verbs: ['get'] },
		{ apiGroups: [''], resources: ['secrets', 'configmaps'], verbs: ['create'] },
		{ apiGroups: [''], resources: ['configmaps'], resourceNames: [CA_DEFAULTS.bundleConfigMap], verbs: ['update'] },
	]);
	for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
		assert.deepEqual(named(kind, 'weir-ca')['subjects'], [{ kind: 'ServiceAccount', name: 'weir-controller', namespace: 'weir-system' }]);
	}
});

test('the ztunnel ServiceAccount the CA trusts reads only the trust bundle', () => {
	assert.equal(named('ServiceAccount', CA_DEFAULTS.ztunnelServiceAccount)['metadata']['namespace'], 'weir-system');
	assert.deepEqual(named('Role', 'weir-ztunnel-trust-bundle')['rules'], [
		{ apiGroups: [''], resources: ['configmaps'], resourceNames: [CA_DEFAULTS.bundleConfigMap], verbs: ['get', 'watch'] },
	]);
});

test('Service weir-ca reaches the controller’s CA port, and its name is in the serving certificate', () => {
	const svc = named('Service', 'weir-ca');
	assert.deepEqual(
		svc['spec']['ports'].map((p: Manifest) => [p['name'], p['port'], p['targetPort']]),
		[['https-ca', CA_DEFAULTS.port, 'https-ca']],
	);
	const deploy = read('controller.yaml').find((d) => d['kind'] === 'Deployment')!;
	assert.deepEqual(svc['spec']['selector'], deploy['spec']['selector']['matchLabels']);
	const port = deploy['spec']['template']['spec']['containers'][0]['ports'].find((p: Manifest) => p['name'] === 'https-ca');
	assert.equal(port['containerPort'], CA_DEFAULTS.port);
	assert.ok(caDnsNames('weir-system').includes('weir-ca.weir-system.svc'));
});
