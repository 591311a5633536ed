// Where the socket load balancer attaches: the cgroup v2 directory that holds every
// process of this node (its pods, and host-network agents beside them). Attaching at
// the machine's root would also translate for other nodes of a local cluster (which
// share one machine) and for the machine's own processes; a node's own subtree does not.
//
// 'auto' finds it from the agent's own cgroup: the agent is a pod of this node, so
// its path is <node>/kubepods…/<pod>/<container> (kubelet's cgroup layout, systemd or
// cgroupfs driver); what comes before the kubelet's part is the node. Under a cgroup
// namespace (kind's nodes) the agent sees its node as '/', the mount's root.
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';

const CGROUP2_SUPER_MAGIC = 0x63677270;

/**
 * Where a cgroup v2 hierarchy may be mounted: the host's /sys/fs/cgroup (the DaemonSet
 * mounts it at /run/weir/cgroupv2; `unified` under it on a hybrid v1/v2 host), then
 * this process's own (an agent run outside a pod).
 */
export const CGROUP2_CANDIDATES = ['/run/weir/cgroupv2/unified', '/run/weir/cgroupv2', '/sys/fs/cgroup/unified', '/sys/fs/cgroup'];

export class CgroupError extends Error {
	readonly code = 'WEIR_ERR_CGROUP';
}

export function isCgroup2(dir: string): boolean {
	try {
		return statfsSync(dir).type === CGROUP2_SUPER_MAGIC;
	} catch {
		return false;
	}
}

/** The unified hierarchy's path from /proc/<pid>/cgroup ('0::/a/b'), if there is one. */
export function unifiedPath(procCgroup: string): string | undefined {
	for (const line of procCgroup.split('\n')) if (line.startsWith('0::')) return line.slice(3).trim();
	return undefined;
}

/** The node's part of a pod container's cgroup path: everything before kubelet's own. */
export function nodePart(path: string): string {
	if (!path.startsWith('/') || path.startsWith('/..')) return '/'; // outside our cgroup namespace: its root is the node
	const parts = path.split('/').filter(Boolean);
	const kubelet = parts.findIndex((p) => /^kubepods|^kubelet/.test(p));
	return '/' + (kubelet < 0 ? parts : parts.slice(0, kubelet)).join('/');
}

/** Resolves the cgroup-root setting to an existing cgroup v2 directory. */
export function resolveCgroupRoot(
	setting: string,
	io: { isCgroup2: (dir: string) => boolean; exists: (p: string) => boolean; ownCgroup: () => string } = {
		isCgroup2,
		exists: existsSync,
		ownCgroup: () => readFileSync('/proc/self/cgroup', 'utf8'),
	},
): string {
	if (setting !== 'auto') {
		if (!io.isCgroup2(setting)) throw new CgroupError(`cgroup-root ${setting} is not a cgroup v2 directory (mount -t cgroup2 none <dir>, or leave it 'auto')`);
		return setting;
	}
	const mount = CGROUP2_CANDIDATES.find((d) => io.isCgroup2(d));
	if (!mount)
		throw new CgroupError(
			`no cgroup v2 hierarchy at ${CGROUP2_CANDIDATES.join(', ')}: the socket load balancer needs one (or set kube-proxy-replacement false)`,
		);
	const own = unifiedPath(io.ownCgroup());
	if (own === undefined) throw new CgroupError('this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup): set cgroup-root');
	const dir = join(mount, nodePart(own));
	if (!io.exists(dir)) throw new CgroupError(`${dir} (this node's part of ${own}) does not exist under ${mount}: set cgroup-root`);
	return dir;
}
