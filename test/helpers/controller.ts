// weir-controller in tests: its configuration for an in-process build, and a kubeconfig
// that makes it its own ServiceAccount (so that deploy/'s RBAC is what is tested).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type { ControllerConfig } from '../../src/controller/app.js';
import { repoRoot } from '../../src/shared/package.js';

/** Loopback on any port, small relay bounds, agents discovered through `kubeconfig` and reached by the pod proxy; `more` adds the CA, the CRDs, … */
export function testControllerConfig(kubeconfig: string, more: Partial<ControllerConfig> = {}): ControllerConfig {
	return {
		host: '127.0.0.1',
		port: 0,
		namespace: 'weir-system',
		nodes: new Map(),
		kubeconfig,
		via: 'pod-proxy',
		agentPort: 9962,
		uiDir: join(repoRoot, 'ui', 'dist'),
		historySize: 100,
		maxFollowers: 4,
		followQueue: 16,
		mergeWindowMs: 100,
		mergeCapacity: 100,
		mapEdges: 100,
		...more,
	};
}

/** Writes, at `path`, a kubeconfig for the admin kubeconfig's cluster that authenticates with `token` as `user`. */
export function tokenKubeconfig(admin: k8s.KubeConfig, user: string, token: string, path: string): string {
	const kc = new k8s.KubeConfig();
	const cluster = admin.getCurrentCluster()!;
	kc.loadFromOptions({
		clusters: [cluster],
		users: [{ name: user, token }],
		contexts: [{ name: 'c', cluster: cluster.name, user }],
		currentContext: 'c',
	});
	writeFileSync(path, kc.exportConfig());
	return path;
}
