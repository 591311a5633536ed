// Istio's vendored security CRDs (deploy/crds/istio-security.yaml) and weir-controller's
// create-if-absent of them (src/controller/crds.ts) against a fake of its API port; the
// real API server is test/cluster/istio-crds.test.ts's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import pino from 'pino';
import { parse, parseAllDocuments } from 'yaml';
import { ensureCrds, ISTIO_CRDS_FILE, loadVendoredCrds, type CrdApi } from '../../src/controller/crds.js';
import { repoRoot } from '../../src/shared/package.js';
import { extractCrds, ISTIO_SECURITY_CRDS } from '../../hack/crds/extract-istio-crds.js';

const text = readFileSync(ISTIO_CRDS_FILE, 'utf8');
const pinned = /^ISTIO_API_VERSION=(\S+)$/m.exec(readFileSync(join(repoRoot, 'hack/crds/update-istio-crds.sh'), 'utf8'))?.[1];

test('the vendored file names its source (the pinned istio.io/api) and license, and holds exactly the two CRDs', () => {
	assert.ok(pinned, 'update-istio-crds.sh pins a version');
	assert.match(
		text,
		new RegExp(`^# from kubernetes/customresourcedefinitions\\.gen\\.yaml of the Go module istio\\.io/api@${pinned.replace(/\./g, '\\.')}$`, 'm'),
	);
	assert.match(text, /^# {3}module sum {2}h1:\S+=$/m);
	assert.match(text, /Apache License, Version 2\.0/);
	const docs = parseAllDocuments(text).map(
		(d) =>
			d.toJS() as { kind: string; metadata: { name: string }; spec: { group: string; versions: Array<{ name: string; served: boolean; storage: boolean }> } },
	);
	assert.deepEqual(
		docs.map((d) => d.metadata.name),
		[...ISTIO_SECURITY_CRDS],
	);
	for (const d of docs) {
		assert.equal(d.kind, 'CustomResourceDefinition');
		assert.equal(d.spec.group, 'security.istio.io');
		assert.deepEqual(
			d.spec.versions.map((v) => [v.name, v.served, v.storage]),
			[
				['v1', true, true],
				['v1beta1', true, false],
			],
			'v1 stored, v1beta1 served too',
		);
	}
	const { source, crds } = loadVendoredCrds();
	assert.equal(source, `istio.io/api@${pinned}`);
	assert.equal(crds.length, 2);
});

test('the CRDs survive the client library’s model both ways (what is created is what Istio published)', () => {
	const raw = parseAllDocuments(text).map((d) => d.toJS() as unknown);
	const { crds } = loadVendoredCrds();
	for (const [i, crd] of crds.entries()) assert.deepEqual(parse(k8s.dumpYaml(crd)), raw[i], crd.metadata?.name);
});

test('extractCrds takes the two documents verbatim and refuses a source without them', () => {
	const crd = (name: string, served = ['v1', 'v1beta1']): string =>
		`apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ${name}\nspec:\n  group: ${name.split('.').slice(1).join('.')}\n  versions:\n${served.map((v) => `  - name: ${v}\n    served: true\n`).join('')}`;
	const source = `# header\n${crd('gateways.networking.istio.io')}---\n${crd(ISTIO_SECURITY_CRDS[1])}---\n${crd(ISTIO_SECURITY_CRDS[0])}`;
	assert.deepEqual(extractCrds(source), [crd(ISTIO_SECURITY_CRDS[0]), crd(ISTIO_SECURITY_CRDS[1])]);
	assert.throws(() => extractCrds(crd(ISTIO_SECURITY_CRDS[0])), /peerauthentications\.security\.istio\.io: 0 documents/);
	assert.throws(() => extractCrds(`${crd(ISTIO_SECURITY_CRDS[0], ['v1'])}---\n${crd(ISTIO_SECURITY_CRDS[1])}`), /serving v1 and v1beta1/);
});

class FakeCrds implements CrdApi {
	readonly created: string[] = [];
	constructor(readonly existing: Map<string, k8s.V1CustomResourceDefinition | undefined>) {}
	async createIfAbsent(crd: k8s.V1CustomResourceDefinition): Promise<boolean> {
		const name = crd.metadata!.name!;
		if (this.existing.has(name)) return false;
		this.existing.set(name, crd);
		this.created.push(name);
		return true;
	}
	async read(name: string): Promise<k8s.V1CustomResourceDefinition | undefined> {
		return this.existing.get(name);
	}
}

function logged(): { log: pino.Logger; lines: Array<{ level: number; msg: string }> } {
	const lines: Array<{ level: number; msg: string }> = [];
	const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });
	return { log, lines };
}

test('ensureCrds creates what is absent and leaves what exists, saying which is used', async () => {
	const vendored = loadVendoredCrds();
	const theirs: k8s.V1CustomResourceDefinition = {
		metadata: { name: ISTIO_SECURITY_CRDS[1], labels: { app: 'istio-pilot', release: 'istio' } },
		spec: {
			group: 'security.istio.io',
			names: { kind: 'PeerAuthentication', plural: 'peerauthentications' },
			scope: 'Namespaced',
			versions: [{ name: 'v1beta1', served: true, storage: true }],
		},
	};
	const api = new FakeCrds(new Map([[ISTIO_SECURITY_CRDS[1], theirs]]));
	const { log, lines } = logged();
	const out = await ensureCrds(api, vendored, log);
	assert.deepEqual(api.created, [ISTIO_SECURITY_CRDS[0]]);
	assert.equal(api.existing.get(ISTIO_SECURITY_CRDS[1]), theirs, 'the existing CRD is not replaced');
	assert.deepEqual(out, [
		{ name: ISTIO_SECURITY_CRDS[0], created: true },
		{ name: ISTIO_SECURITY_CRDS[1], created: false, served: ['v1beta1'], labels: { app: 'istio-pilot', release: 'istio' } },
	]);
	assert.deepEqual(
		lines.map((l) => [l.level, l.msg]),
		[
			[30, `created CRD ${ISTIO_SECURITY_CRDS[0]} from ${vendored.source}`],
			[40, `CRD ${ISTIO_SECURITY_CRDS[1]} exists but does not serve v1, which the ztunnel reads: left as it is`],
		],
	);

	// Run again: both exist now; one cannot be read (no permission): nothing is created.
	api.existing.set(ISTIO_SECURITY_CRDS[1], undefined);
	const again = logged();
	assert.deepEqual(await ensureCrds(api, vendored, again.log), [
		{ name: ISTIO_SECURITY_CRDS[0], created: false, served: ['v1', 'v1beta1'], labels: vendored.crds[0]!.metadata!.labels },
		{ name: ISTIO_SECURITY_CRDS[1], created: false },
	]);
	assert.deepEqual(api.created, [ISTIO_SECURITY_CRDS[0]]);
	assert.equal(again.lines[0]!.msg, `CRD ${ISTIO_SECURITY_CRDS[0]} exists (serving v1, v1beta1): left as it is`);
	assert.equal(again.lines[1]!.msg, `CRD ${ISTIO_SECURITY_CRDS[1]} exists: left as it is`);
});

test('deploy/base/crds.yaml: weir-controller may create CRDs and get only the two, nothing else', () => {
	assert.match(readFileSync(join(repoRoot, 'deploy', 'base', 'kustomization.yaml'), 'utf8'), /^\s+- crds\.yaml$/m);
	const docs = parseAllDocuments(readFileSync(join(repoRoot, 'deploy', 'base', 'crds.yaml'), 'utf8')).map((d) => d.toJS() as Record<string, never>);
	const role = docs.find((d) => d['kind'] === 'ClusterRole') as { rules: unknown } | undefined;
	assert.deepEqual(role?.rules, [
		{ apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], verbs: ['create'] },
		{ apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], resourceNames: [...ISTIO_SECURITY_CRDS], verbs: ['get'] },
	]);
	const binding = docs.find((d) => d['kind'] === 'ClusterRoleBinding') as { subjects: unknown } | undefined;
	assert.deepEqual(binding?.subjects, [{ kind: 'ServiceAccount', name: 'weir-controller', namespace: 'weir-system' }]);
	assert.doesNotMatch(readFileSync(join(repoRoot, 'deploy', 'base', 'kustomization.yaml'), 'utf8'), /istio-security/, 'the CRDs themselves are not applied');
});
