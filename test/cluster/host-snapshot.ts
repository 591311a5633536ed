// What the host looks like from outside any cluster: compared before and after a
// cluster's life to prove it left nothing behind.
import { readFileSync } from 'node:fs';
import { run } from '../../hack/cluster/exec.js';

export interface HostSnapshot {
	links: string[];
	netns: string[];
	mounts: string[];
	nftables: string;
}

export async function hostSnapshot(): Promise<HostSnapshot> {
	const links = (await run('ip', ['-o', 'link', 'show'])).stdout
		.split('\n')
		.map((l) => l.split(':')[1]?.trim().split('@')[0] ?? '')
		.filter(Boolean)
		.sort();
	const netns = (await run('ip', ['netns', 'list'], { allowFail: true })).stdout
		.split('\n')
		.map((l) => l.split(' ')[0] ?? '')
		.filter(Boolean)
		.sort();
	const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
		.split('\n')
		.map((l) => l.split(' ')[4] ?? '')
		.filter(Boolean)
		.sort();
	const nftables = (await run('nft', ['list', 'ruleset'], { allowFail: true })).stdout;
	return { links, netns, mounts, nftables };
}
