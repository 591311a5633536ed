// Typed rtnetlink for pod wiring. Every method takes the netns path it works in
// (undefined = the agent's own); the addon does the work on a thread that entered it.
// Errors are NativeErrors (code = errno name, op = the rtnetlink message). Every call
// is asynchronous: the kernel work (and its RCU waits) never blocks the event loop.
import { NativeAddrRow, NativeError, NativeLinkRow, NativeNeighRow, NativeRouteRow, NativeRouteSpec, NativeRuleRow, NativeRuleSpec, native } from './addon.js';

export type LinkRow = NativeLinkRow;
export type AddrRow = NativeAddrRow;
export type RouteRow = NativeRouteRow;
export type RouteSpec = NativeRouteSpec;
export type NeighRow = NativeNeighRow;
export type RuleSpec = NativeRuleSpec;
export type RuleRow = NativeRuleRow;

export function isNativeError(err: unknown, ...codes: string[]): err is NativeError {
	return err instanceof Error && typeof (err as NativeError).code === 'string' && (codes.length === 0 || codes.includes((err as NativeError).code));
}

/** rtnetlink in one network namespace. */
export class Netlink {
	constructor(readonly netns?: string) {}

	/** The same calls in another namespace. */
	static in(netns: string | undefined): Netlink {
		return new Netlink(netns);
	}

	async vethAdd(opts: { name: string; peerName: string; peerNetns?: string; mtu?: number; peerMac?: string }): Promise<void> {
		await native().nlVethAdd(opts, this.netns);
	}

	async linkSet(name: string, opts: { up?: boolean; mtu?: number; mac?: string; newName?: string; netnsPath?: string }): Promise<void> {
		await native().nlLinkSet(name, opts, this.netns);
	}

	linkDel(name: string): Promise<boolean> {
		return native().nlLinkDel(name, this.netns);
	}

	links(): Promise<LinkRow[]> {
		return native().nlLinkList(this.netns);
	}

	async link(name: string): Promise<LinkRow | undefined> {
		return (await this.links()).find((l) => l.name === name);
	}

	async addrAdd(dev: string, cidr: string): Promise<void> {
		await native().nlAddrAdd(dev, cidr, this.netns);
	}

	addrDel(dev: string, cidr: string): Promise<boolean> {
		return native().nlAddrDel(dev, cidr, this.netns);
	}

	addrs(): Promise<AddrRow[]> {
		return native().nlAddrList(this.netns);
	}

	async routeAdd(route: RouteSpec): Promise<void> {
		await native().nlRouteAdd(route, this.netns);
	}

	routeDel(route: RouteSpec): Promise<boolean> {
		return native().nlRouteDel(route, this.netns);
	}

	/** Routes of one table (default: main). */
	routes(table?: number): Promise<RouteRow[]> {
		return native().nlRouteList(this.netns, table);
	}

	/** Adds a policy-routing rule; false when the same rule was already there. */
	ruleAdd(rule: RuleSpec): Promise<boolean> {
		return native().nlRuleAdd(rule, this.netns);
	}

	/** Removes a rule; false when there was none. */
	ruleDel(rule: RuleSpec): Promise<boolean> {
		return native().nlRuleDel(rule, this.netns);
	}

	rules(): Promise<RuleRow[]> {
		return native().nlRuleList(this.netns);
	}

	async neighAdd(opts: { dev: string; ip: string; mac: string }): Promise<void> {
		await native().nlNeighAdd(opts, this.netns);
	}

	neighbours(): Promise<NeighRow[]> {
		return native().nlNeighList(this.netns);
	}

	async sysctl(key: string, value: string): Promise<void> {
		await native().nlSysctlWrite(key, value, this.netns);
	}

	readSysctl(key: string): Promise<string> {
		return native().nlSysctlRead(key, this.netns);
	}
}
