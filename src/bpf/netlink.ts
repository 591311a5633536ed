// Typed rtnetlink for pod wiring. Every method takes the netns path it works in
// (undefined = the agent's own); the addon does the work on a thread that entered it.
// Errors are NativeErrors (code = errno name, op = the rtnetlink message).
import {
	NativeAddrRow,
	NativeError,
	NativeLinkRow,
	NativeNeighRow,
	NativeRouteRow,
	NativeRouteSpec,
	native,
} from './native.js';

export type LinkRow = NativeLinkRow;
export type AddrRow = NativeAddrRow;
export type RouteRow = NativeRouteRow;
export type RouteSpec = NativeRouteSpec;
export type NeighRow = NativeNeighRow;

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

	vethAdd(opts: { name: string; peerName: string; peerNetns?: string; mtu?: number; peerMac?: string }): void {
		native().nlVethAdd(opts, this.netns);
	}

	linkSet(name: string, opts: { up?: boolean; mtu?: number; mac?: string; newName?: string; netnsPath?: string }): void {
		native().nlLinkSet(name, opts, this.netns);
	}

	linkDel(name: string): boolean {
		return native().nlLinkDel(name, this.netns);
	}

	links(): LinkRow[] {
		return native().nlLinkList(this.netns);
	}

	link(name: string): LinkRow | undefined {
		return this.links().find((l) => l.name === name);
	}

	addrAdd(dev: string, cidr: string): void {
		native().nlAddrAdd(dev, cidr, this.netns);
	}

	addrDel(dev: string, cidr: string): boolean {
		return native().nlAddrDel(dev, cidr, this.netns);
	}

	addrs(): AddrRow[] {
		return native().nlAddrList(this.netns);
	}

	routeAdd(route: RouteSpec): void {
		native().nlRouteAdd(route, this.netns);
	}

	routeDel(route: RouteSpec): boolean {
		return native().nlRouteDel(route, this.netns);
	}

	routes(): RouteRow[] {
		return native().nlRouteList(this.netns);
	}

	neighAdd(opts: { dev: string; ip: string; mac: string }): void {
		native().nlNeighAdd(opts, this.netns);
	}

	neighbours(): NeighRow[] {
		return native().nlNeighList(this.netns);
	}

	sysctl(key: string, value: string): void {
		native().nlSysctlWrite(key, value, this.netns);
	}

	readSysctl(key: string): string {
		return native().nlSysctlRead(key, this.netns);
	}
}
