// The agent's CNI configuration: built purely from options, written atomically into
// the runtime's conf dir once the agent is ready. Only Weir's own file is ever
// written or removed; other CNI configs in the directory are left alone.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ConflistOptions {
	/** network name */
	name: string;
	/** 1.0.0 by default: the newest version Debian's containerd and plugins speak */
	cniVersion: string;
	agentSocket: string;
	/** the node's PodCIDR, for host-local */
	podCidr: string;
	/** host-local's state dir (default /var/lib/cni/networks) */
	ipamDataDir?: string;
	mtu?: number;
	/** chain portmap after weir (hostPort support) */
	portmap: boolean;
	dns?: { nameservers?: string[]; search?: string[]; domain?: string; options?: string[] };
}

export const CONFLIST_FILE = '05-weir.conflist';

export function buildConflist(o: ConflistOptions): Record<string, unknown> {
	const weir: Record<string, unknown> = {
		type: 'weir-cni',
		agentSocket: o.agentSocket,
		ipam: {
			type: 'host-local',
			ranges: [[{ subnet: o.podCidr }]],
			...(o.ipamDataDir ? { dataDir: o.ipamDataDir } : {}),
		},
	};
	if (o.mtu) weir['mtu'] = o.mtu;
	if (o.dns) weir['dns'] = o.dns;
	const plugins: Array<Record<string, unknown>> = [weir];
	if (o.portmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true }, snat: true });
	return { cniVersion: o.cniVersion, name: o.name, plugins };
}

/** Writes the conflist (tmp + rename: the runtime never reads half a file). */
export function writeConflist(confDir: string, conflist: Record<string, unknown>, file = CONFLIST_FILE): string {
	mkdirSync(confDir, { recursive: true });
	const path = join(confDir, file);
	const tmp = join(confDir, `.${file}.tmp-${process.pid}`);
	writeFileSync(tmp, JSON.stringify(conflist, null, 2) + '\n');
	renameSync(tmp, path);
	return path;
}
