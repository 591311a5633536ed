// The kernel side of transparent capture outside the eBPF programs (docs/ztunnel.md):
// the policy-routing rule and table that deliver captured packets locally, installed
// by the agent in the node's namespace, and the ztunnel's IP_TRANSPARENT sockets,
// which Node cannot make itself (the addon makes them and hands over their fds).
import { DEFAULT_CONFIG } from './datapath.js';
import { Netlink, RuleSpec, isNativeError } from './netlink.js';
import { NativeTransparentConnect, NativeTransparentListen, native } from './addon.js';

/** Where captured packets are routed: `ip rule pref P fwmark M/MASK lookup T` + `local default dev lo table T`. */
export interface CaptureRouting {
	/** the pod programs' captureMark / captureMask (DatapathConfig) */
	mark: number;
	mask: number;
	table: number;
	priority: number;
}

export const DEFAULT_CAPTURE_ROUTING: CaptureRouting = {
	mark: DEFAULT_CONFIG.captureMark,
	mask: DEFAULT_CONFIG.captureMask,
	table: 2050,
	// After the `local` table (0), before `main` (32766): a captured packet for another
	// host's address is delivered here, one for this host's is local already.
	priority: 90,
};

function ruleOf(r: CaptureRouting): RuleSpec {
	return { priority: r.priority, fwmark: r.mark, fwmask: r.mask, table: r.table };
}

const LOCAL_DEFAULT = (table: number) => ({ dst: '0.0.0.0/0', dev: 'lo', type: 'local', table }) as const;

/**
 * Installs the capture's rule and table in a network namespace (the node's; undefined =
 * this process's). Idempotent: what is already there is kept. Returns whether anything
 * was added.
 */
export async function installCaptureRouting(netns?: string, r: CaptureRouting = DEFAULT_CAPTURE_ROUTING): Promise<boolean> {
	const nl = Netlink.in(netns);
	let added = false;
	try {
		await nl.routeAdd(LOCAL_DEFAULT(r.table));
		added = true;
	} catch (err) {
		if (!isNativeError(err, 'EEXIST')) throw err;
	}
	// The table first: the rule never points at an empty table.
	if (await nl.ruleAdd(ruleOf(r))) added = true;
	return added;
}

/** Removes the rule, then the table's route. Missing ones are fine. Returns whether anything was removed. */
export async function removeCaptureRouting(netns?: string, r: CaptureRouting = DEFAULT_CAPTURE_ROUTING): Promise<boolean> {
	const nl = Netlink.in(netns);
	const rule = await nl.ruleDel(ruleOf(r));
	const route = await nl.routeDel(LOCAL_DEFAULT(r.table));
	return rule || route;
}

/** Whether both the rule and the table's local default route are in place. */
export async function captureRoutingInstalled(netns?: string, r: CaptureRouting = DEFAULT_CAPTURE_ROUTING): Promise<boolean> {
	const nl = Netlink.in(netns);
	const rules = await nl.rules();
	const hasRule = rules.some((x) => x.priority === r.priority && x.fwmark === r.mark && x.fwmask === r.mask && x.table === r.table && x.action === 'lookup');
	const routes = await nl.routes(r.table);
	return hasRule && routes.some((x) => x.dst === '0.0.0.0/0' && x.type === 'local');
}

export type TransparentListenOptions = NativeTransparentListen;
export type TransparentConnectOptions = NativeTransparentConnect;

/**
 * A listening IP_TRANSPARENT TCP socket: the fd, for `net.createServer().listen({ fd })`.
 * The caller owns it. Throws a NativeError (code, errno, op: 'setsockopt(IP_TRANSPARENT)',
 * 'bind' …): IP_TRANSPARENT needs CAP_NET_ADMIN.
 */
export function transparentListenerFd(opts: TransparentListenOptions): number {
	return native().tcpListenTransparent(opts);
}

/**
 * A TCP connection from `source` (IP_TRANSPARENT, SO_MARK), connected off the event
 * loop: the fd, for `new net.Socket({ fd, readable: true, writable: true })`. The
 * caller owns it. Rejects with a NativeError (op 'connect': ECONNREFUSED, ETIMEDOUT …).
 */
export function transparentConnectFd(opts: TransparentConnectOptions): Promise<number> {
	return native().tcpConnectTransparent(opts);
}
