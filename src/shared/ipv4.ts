// IPv4 addresses and prefixes: the one place that parses them. Weir enforces IPv4
// only (docs/policy.md); everything that reads an address or a CIDR comes here.
import { isIPv4 } from 'node:net';

/** Whether `s` is a dotted-quad IPv4 address (no prefix). */
export function isIpv4(s: string): boolean {
	return isIPv4(s);
}

/** IPv4 dotted quad to its 32-bit value (as written in network order). */
export function ipv4ToInt(ip: string): number {
	if (!isIPv4(ip)) throw new TypeError(`not an IPv4 address: '${ip}'`);
	const p = ip.split('.').map(Number);
	return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

export function intToIpv4(v: number): string {
	return [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

export interface Cidr4 {
	/** the network address (host bits cleared) as a 32-bit value */
	addr: number;
	prefix: number;
}

function prefixLength(len: string | undefined, text: string): number {
	const prefix = len === undefined ? 32 : Number(len);
	if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32 || (len !== undefined && !/^\d+$/.test(len))) {
		throw new TypeError(`bad IPv4 prefix length in '${text}'`);
	}
	return prefix;
}

function mask(prefix: number): number {
	return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses 'a.b.c.d/n' (or a bare address, /32); host bits are cleared. */
export function parseCidr4(cidr: string): Cidr4 {
	const [ip, len, extra] = cidr.split('/');
	if (extra !== undefined) throw new TypeError(`bad IPv4 prefix length in '${cidr}'`);
	const prefix = prefixLength(len, cidr);
	return { addr: (ipv4ToInt(ip ?? '') & mask(prefix)) >>> 0, prefix };
}

/**
 * An interface address 'a.b.c.d/n' as given (host bits kept), as CNI results carry it;
 * the prefix is required.
 */
export function parseInterfaceAddress4(s: string): { ip: string; prefix: number } {
	const [ip, p, extra] = s.split('/');
	if (extra !== undefined || !ip || !isIPv4(ip) || p === undefined || !/^\d{1,2}$/.test(p) || Number(p) > 32) {
		throw new TypeError(`'${s}' is not an IPv4 address/prefix`);
	}
	return { ip, prefix: Number(p) };
}

/** '10.1.2.3/8' → '10.0.0.0/8'; a bare address → '/32'. */
export function normaliseCidr(cidr: string): string {
	const c = parseCidr4(cidr);
	return `${intToIpv4(c.addr)}/${c.prefix}`;
}

/** True when the address (a 32-bit value, ipv4ToInt) lies inside the prefix. */
export function cidrContains(c: Cidr4, addr: number): boolean {
	return (addr & mask(c.prefix)) >>> 0 === c.addr;
}

/** True when prefix `inner` lies inside prefix `outer` (both normalised or not). */
export function cidrWithin(inner: string, outer: string): boolean {
	const i = parseCidr4(inner);
	const o = parseCidr4(outer);
	if (i.prefix < o.prefix) return false;
	return cidrContains(o, i.addr);
}
