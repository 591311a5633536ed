// Mesh membership (src/shared/mesh.ts): every rule, and which wins when several apply;
// the same answers read off API objects (src/cluster/objects.ts).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import { ISTIO_DATAPLANE_MODE, MESH_KEY, MeshNamespace, MeshPod, meshAnnotations, meshMembership } from '../../src/shared/mesh.js';
import { podMeshMembership } from '../../src/cluster/objects.js';

const MESHED_NS = { labels: { [MESH_KEY]: 'enabled' } };
const AMBIENT_NS = { labels: { [ISTIO_DATAPLANE_MODE]: 'ambient' } };
const PLAIN_NS = { labels: { team: 'x' } };

describe('meshMembership', () => {
	const cases: Array<[string, MeshPod, MeshNamespace | undefined, boolean, RegExp]> = [
		['a pod in a namespace labelled weir.io/mesh=enabled', { namespace: 'a' }, MESHED_NS, true, /namespace label weir\.io\/mesh=enabled/],
		["a pod in a namespace labelled with Istio's ambient mode", { namespace: 'a' }, AMBIENT_NS, true, /namespace label istio\.io\/dataplane-mode=ambient/],
		['a pod in a namespace without the labels', { namespace: 'a', labels: { app: 'x' } }, PLAIN_NS, false, /not opted in/],
		['a pod whose namespace is not known', { namespace: 'a' }, undefined, false, /not opted in/],
		['another value of the namespace label is no opinion', { namespace: 'a' }, { labels: { [MESH_KEY]: 'true' } }, false, /not opted in/],
		['a pod label weir.io/mesh is not the annotation', { namespace: 'a', labels: { [MESH_KEY]: 'enabled' } }, PLAIN_NS, false, /not opted in/],
		// opt-out of a meshed namespace
		[
			'annotation weir.io/mesh: disabled opts out',
			{ namespace: 'a', annotations: { [MESH_KEY]: 'disabled' } },
			MESHED_NS,
			false,
			/pod annotation weir\.io\/mesh: disabled/,
		],
		[
			'pod label istio.io/dataplane-mode=none opts out',
			{ namespace: 'a', labels: { [ISTIO_DATAPLANE_MODE]: 'none' } },
			AMBIENT_NS,
			false,
			/pod label istio\.io\/dataplane-mode=none/,
		],
		// single-pod opt-in
		[
			'annotation weir.io/mesh: enabled opts in',
			{ namespace: 'a', annotations: { [MESH_KEY]: 'enabled' } },
			PLAIN_NS,
			true,
			/pod annotation weir\.io\/mesh: enabled/,
		],
		[
			'pod label istio.io/dataplane-mode=ambient opts in',
			{ namespace: 'a', labels: { [ISTIO_DATAPLANE_MODE]: 'ambient' } },
			undefined,
			true,
			/pod label istio\.io\/dataplane-mode=ambient/,
		],
		// precedence
		[
			'opting out beats opting in (annotation disabled, label ambient)',
			{ namespace: 'a', labels: { [ISTIO_DATAPLANE_MODE]: 'ambient' }, annotations: { [MESH_KEY]: 'disabled' } },
			MESHED_NS,
			false,
			/annotation weir\.io\/mesh: disabled/,
		],
		[
			'opting out beats opting in (label none, annotation enabled)',
			{ namespace: 'a', labels: { [ISTIO_DATAPLANE_MODE]: 'none' }, annotations: { [MESH_KEY]: 'enabled' } },
			PLAIN_NS,
			false,
			/label istio\.io\/dataplane-mode=none/,
		],
		['host network beats everything', { namespace: 'a', hostNetwork: true, annotations: { [MESH_KEY]: 'enabled' } }, MESHED_NS, false, /host network/],
		[
			'weir-system is never meshed',
			{ namespace: 'weir-system', annotations: { [MESH_KEY]: 'enabled' } },
			MESHED_NS,
			false,
			/namespace weir-system is never meshed/,
		],
		[
			'kube-system is never meshed',
			{ namespace: 'kube-system', labels: { [ISTIO_DATAPLANE_MODE]: 'ambient' } },
			AMBIENT_NS,
			false,
			/namespace kube-system is never meshed/,
		],
		['another value of the annotation is no opinion', { namespace: 'a', annotations: { [MESH_KEY]: 'off' } }, MESHED_NS, true, /namespace label/],
	];
	for (const [name, pod, ns, meshed, reason] of cases) {
		test(name, () => {
			const m = meshMembership(pod, ns);
			assert.equal(m.meshed, meshed);
			assert.match(m.reason, reason);
		});
	}

	test('only the annotations membership reads are kept', () => {
		assert.deepEqual(meshAnnotations({ [MESH_KEY]: 'disabled', 'kubectl.kubernetes.io/last-applied-configuration': '{…}' }), { [MESH_KEY]: 'disabled' });
		assert.deepEqual(meshAnnotations(undefined), {});
	});
});

test('API objects: labels, annotations and host networking read off the pod, labels off its namespace', () => {
	const pod = (over: Partial<k8s.V1Pod> = {}): k8s.V1Pod => ({ metadata: { namespace: 'a', name: 'p' }, spec: { containers: [] }, ...over });
	const ns = (labels?: Record<string, string>): k8s.V1Namespace => ({ metadata: { name: 'a', ...(labels ? { labels } : {}) } });
	assert.equal(podMeshMembership(pod(), ns({ [MESH_KEY]: 'enabled' })).meshed, true);
	assert.equal(podMeshMembership(pod(), ns()).meshed, false);
	assert.equal(podMeshMembership(pod(), undefined).meshed, false);
	assert.equal(
		podMeshMembership(pod({ metadata: { namespace: 'a', name: 'p', annotations: { [MESH_KEY]: 'disabled' } } }), ns({ [MESH_KEY]: 'enabled' })).meshed,
		false,
	);
	assert.equal(podMeshMembership(pod({ metadata: { namespace: 'a', name: 'p', labels: { [ISTIO_DATAPLANE_MODE]: 'ambient' } } }), ns()).meshed, true);
	assert.equal(podMeshMembership(pod({ spec: { containers: [], hostNetwork: true } }), ns({ [MESH_KEY]: 'enabled' })).reason, 'host network');
	assert.equal(podMeshMembership({ metadata: { name: 'p' } }, undefined).reason, 'not opted in', "no namespace: 'default'");
});
