// Pinned versions (hack/cluster/versions.env) and where their builds are cached.
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClusterError } from './exec.js';

/** hack/cluster in the source tree, also when running from dist/hack/cluster. */
export function sourceDir(): string {
	const here = dirname(fileURLToPath(import.meta.url));
	for (const cand of [here, resolve(here, '../../../hack/cluster')]) {
		if (existsSync(join(cand, 'versions.env'))) return cand;
	}
	throw new ClusterError('WEIR_ERR_CLUSTER_SOURCE', `cannot find hack/cluster/versions.env from ${here}`);
}

export interface Versions {
	kubernetes: string;
	etcd: string;
	coredns: string;
	cni: string;
}

export function readVersions(): Versions {
	const env: Record<string, string> = {};
	for (const line of readFileSync(join(sourceDir(), 'versions.env'), 'utf8').split('\n')) {
		const m = /^([A-Z_]+)=(\S+)/.exec(line);
		if (m && m[1] && m[2]) env[m[1]] = m[2];
	}
	const get = (k: string): string => {
		const v = env[k];
		if (!v) throw new ClusterError('WEIR_ERR_CLUSTER_SOURCE', `versions.env lacks ${k}`);
		return v;
	};
	return {
		kubernetes: get('KUBERNETES_VERSION'),
		etcd: get('ETCD_VERSION'),
		coredns: get('COREDNS_VERSION'),
		cni: get('CNI_VERSION'),
	};
}

export function cacheRoot(): string {
	return process.env['WEIR_CACHE'] ?? '/var/cache/weir';
}

export interface BinPaths {
	etcd: string;
	kubeApiserver: string;
	kubeControllerManager: string;
	kubeScheduler: string;
	kubelet: string;
	kubeProxy: string;
	kubectl: string;
	coredns: string;
	cnitool: string;
}

export function binPaths(v: Versions = readVersions()): BinPaths {
	const root = cacheRoot();
	const k = join(root, `kubernetes-${v.kubernetes}`, 'bin');
	return {
		etcd: join(root, `etcd-${v.etcd}`, 'bin', 'etcd'),
		kubeApiserver: join(k, 'kube-apiserver'),
		kubeControllerManager: join(k, 'kube-controller-manager'),
		kubeScheduler: join(k, 'kube-scheduler'),
		kubelet: join(k, 'kubelet'),
		kubeProxy: join(k, 'kube-proxy'),
		kubectl: join(k, 'kubectl'),
		coredns: join(root, `coredns-${v.coredns}`, 'bin', 'coredns'),
		cnitool: join(root, `cni-${v.cni}`, 'bin', 'cnitool'),
	};
}

/** Component names for build-binaries.sh whose cached build is missing. */
export function missingBuilds(v: Versions = readVersions()): string[] {
	const root = cacheRoot();
	const dirs: Record<string, string> = {
		etcd: `etcd-${v.etcd}`,
		cni: `cni-${v.cni}`,
		coredns: `coredns-${v.coredns}`,
		kubernetes: `kubernetes-${v.kubernetes}`,
	};
	return Object.entries(dirs)
		.filter(([, d]) => !existsSync(join(root, d, 'bin', '.complete')))
		.map(([name]) => name);
}
