// deploy/base/controller.yaml: weir-controller from the agent's image, read-only RBAC, the
// relay Service on the port the CLI expects, probes on the relay's own routes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { RELAY_DEFAULTS } from '../../src/shared/defaults.js';
import { executables, repoRoot } from '../../src/shared/package.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- free-form YAML, asserted field by field
type Manifest = Record<string, any>;

const docs = parseAllDocuments(readFileSync(join(repoRoot, 'deploy', 'base', 'controller.yaml'), 'utf8')).map((d) => {
	assert.deepEqual(d.errors, []);
	return d.toJS() as Manifest;
});
const one = (kind: string): Manifest => {
	const hits = docs.filter((d) => d['kind'] === kind);
	assert.equal(hits.length, 1, kind);
	return hits[0]!;
};

test('deploy/base/controller.yaml: in the kustomization, the agent image, a command of package.json bin', () => {
	assert.match(readFileSync(join(repoRoot, 'deploy', 'base', 'kustomization.yaml'), 'utf8'), /^\s+- controller\.yaml$/m);
	const c = one('Deployment')['spec']['template']['spec']['containers'][0];
	const agentImage = parseAllDocuments(readFileSync(join(repoRoot, 'deploy', 'base', 'daemonset.yaml'), 'utf8'))[0]!.toJS()['spec']['template']['spec'][
		'containers'
	][0]['image'];
	assert.equal(c['image'], agentImage, 'the same image as the agent');
	assert.ok(c['command'][0] in executables(), `${c['command'][0]} is an executable of package.json`);
	assert.equal(c['ports'][0]['containerPort'], RELAY_DEFAULTS.port);
	assert.equal(c['readinessProbe']['httpGet']['path'], '/readyz');
	assert.equal(c['livenessProbe']['httpGet']['path'], '/healthz');
	assert.equal(c['securityContext']['readOnlyRootFilesystem'], true);
	assert.ok(c['resources']['limits']['memory'], 'a memory limit');
});

test('deploy/base/controller.yaml: the relay only reads the API (nodes, namespaces; pods in weir-system)', () => {
	const verbs = [...one('ClusterRole')['rules'], ...one('Role')['rules']] as Array<{ resources: string[]; verbs: string[] }>;
	for (const r of verbs) assert.deepEqual(r.verbs, ['get', 'list', 'watch'], r.resources.join(','));
	assert.deepEqual(one('ClusterRole')['rules'][0]['resources'], ['nodes', 'namespaces']);
	assert.deepEqual(one('Role')['rules'][0]['resources'], ['pods']);
	assert.equal(one('Role')['metadata']['namespace'], 'weir-system');
	assert.equal(one('ServiceAccount')['metadata']['name'], one('Deployment')['spec']['template']['spec']['serviceAccountName']);
});

test('deploy/base/controller.yaml: Service weir-relay, port named as the CLI reaches it through the API server', () => {
	const svc = one('Service');
	assert.equal(svc['metadata']['name'], RELAY_DEFAULTS.service);
	assert.equal(svc['metadata']['namespace'], RELAY_DEFAULTS.namespace);
	assert.deepEqual(
		svc['spec']['ports'].map((p: Manifest) => [p['name'], p['port']]),
		[[RELAY_DEFAULTS.servicePort, RELAY_DEFAULTS.port]],
	);
	assert.deepEqual(svc['spec']['selector'], one('Deployment')['spec']['selector']['matchLabels']);
});
