// Traces a cluster could leave on the host, narrowed to what this cluster would make:
// other work on the same machine (other tests' namespaces, links, mounts) is ignored.
// Compared before and after a cluster's life to prove it left nothing behind.
import { readFileSync } from 'node:fs';
import { run } from '../../hack/cluster/exec.js';
import { clusterDir, netnsPrefix } from '../../hack/cluster/resources.js';

export interface HostTraces {
	netns: string[];
	links: string[];
	mounts: string[];
	/** kube-proxy / CNI rules in the host's own packet filter (they belong in node netns). */
	filterRules: string[];
}

/** Link names the cluster uses inside its namespaces; none may ever show up on the host. */
const CLUSTER_LINKS = new Set(['cni0', 'br0', 'n1', 'n2', 'kube-ipvs0']);

export async function hostTraces(name: string): Promise<HostTraces> {
	const links = (await run('ip', ['-o', 'link', 'show'])).stdout
		.split('\n')
		.map((l) => l.split(':')[1]?.trim().split('@')[0] ?? '')
		.filter((l) => CLUSTER_LINKS.has(l));
	const netns = (await run('ip', ['netns', 'list'], { allowFail: true })).stdout
		.split('\n')
		.map((l) => l.split(' ')[0] ?? '')
		.filter((n) => n.startsWith(netnsPrefix(name)));
	const dir = clusterDir(name);
	const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
		.split('\n')
		.map((l) => l.split(' ')[4] ?? '')
		.filter(
			(mp) =>
				mp.startsWith(dir) || mp.includes(netnsPrefix(name)) || /^\/(var\/lib\/(kubelet|containerd|cni)|run\/containerd|etc\/cni|opt\/cni)(\/|$)/.test(mp),
		);
	const nft = (await run('nft', ['list', 'ruleset'], { allowFail: true })).stdout;
	const filterRules = nft.split('\n').filter((l) => /KUBE-|CNI-|kube-proxy/.test(l));
	return { netns, links, mounts, filterRules };
}
