// Pure result building: the IPAM result as Weir reads it, the host-side interface
// name, and the spec result in each supported version.
import { createHash } from 'node:crypto';
import { CniVersion, DnsConfig } from './config.js';
import { CniCode, CniError } from './errors.js';
import { parseInterfaceAddress4 } from '../shared/ipv4.js';

/** The link-local gateway every pod routes through (Cilium/Calico style). */
export const GATEWAY_IP = '169.254.1.1';

export interface Interface {
	name: string;
	mac: string;
	mtu?: number;
	sandbox?: string;
}

export interface IpConfig {
	/** "a.b.c.d/len" */
	address: string;
	gateway?: string;
	interface?: number;
}

export interface Route {
	dst: string;
	gw?: string;
}

/** The result in its newest form (1.1.0); older forms are derived from it. */
export interface Result {
	cniVersion: CniVersion;
	interfaces: Interface[];
	ips: IpConfig[];
	routes: Route[];
	dns: DnsConfig;
}

/** Host side of a pod's veth: "lxc" + 12 hex digits of sha256(containerId/ifname) (15 bytes max). */
export function hostIfName(containerId: string, ifname: string): string {
	return 'lxc' + createHash('sha256').update(`${containerId}/${ifname}`).digest('hex').slice(0, 12);
}

function isObject(v: unknown): v is Record<string, unknown> {
	return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The IPv4 address the IPAM plugin allocated (0.4.0 and 1.x results alike).
 * Weir needs exactly one IPv4 address; IPv6 ones are refused, not silently dropped.
 */
export function ipamAddress(ipamResult: unknown, ipamType: string): { ip: string; prefix: number; dns?: DnsConfig } {
	if (!isObject(ipamResult) || !Array.isArray(ipamResult['ips'])) {
		throw new CniError(CniCode.Other, `IPAM plugin ${ipamType} returned no addresses`, JSON.stringify(ipamResult).slice(0, 300));
	}
	const v4: Array<{ ip: string; prefix: number }> = [];
	for (const e of ipamResult['ips'] as unknown[]) {
		if (!isObject(e) || typeof e['address'] !== 'string') continue;
		const addr = e['address'];
		if (addr.includes(':')) {
			throw new CniError(
				CniCode.InvalidConfig,
				`IPAM plugin ${ipamType} returned an IPv6 address (${addr})`,
				'Weir wires IPv4 pods only: configure an IPv4 range',
			);
		}
		v4.push(parseInterfaceAddress4(addr));
	}
	if (v4.length !== 1) {
		throw new CniError(
			CniCode.InvalidConfig,
			`IPAM plugin ${ipamType} returned ${v4.length} IPv4 addresses`,
			'Weir needs exactly one: configure one IPv4 range',
		);
	}
	const out: { ip: string; prefix: number; dns?: DnsConfig } = v4[0]!;
	if (isObject(ipamResult['dns'])) out.dns = ipamResult['dns'] as DnsConfig;
	return out;
}

export interface AddOutcome {
	hostIf: { name: string; mac: string; mtu: number };
	podIf: { name: string; mac: string; mtu: number; sandbox: string };
	ip: string;
	/** dns from the network config, else from IPAM */
	dns?: DnsConfig;
}

/** The ADD result: host veth (0), pod interface (1) with a /32 and the link-local gateway, default route. */
export function buildResult(version: CniVersion, o: AddOutcome): Result {
	return {
		cniVersion: version,
		interfaces: [
			{ name: o.hostIf.name, mac: o.hostIf.mac, mtu: o.hostIf.mtu },
			{ name: o.podIf.name, mac: o.podIf.mac, mtu: o.podIf.mtu, sandbox: o.podIf.sandbox },
		],
		ips: [{ address: `${o.ip}/32`, gateway: GATEWAY_IP, interface: 1 }],
		routes: [{ dst: '0.0.0.0/0', gw: GATEWAY_IP }],
		dns: o.dns ?? {},
	};
}

/** The result as the caller's cniVersion spells it. */
export function formatResult(r: Result, version: CniVersion): Record<string, unknown> {
	const dns = Object.keys(r.dns).length ? { dns: r.dns } : {};
	if (version === '0.4.0') {
		return {
			cniVersion: version,
			interfaces: r.interfaces.map(({ name, mac, sandbox }) => ({ name, mac, ...(sandbox ? { sandbox } : {}) })),
			ips: r.ips.map((ip) => ({ version: '4', ...ip })),
			routes: r.routes,
			...dns,
		};
	}
	const interfaces = version === '1.0.0' ? r.interfaces.map(({ name, mac, sandbox }) => ({ name, mac, ...(sandbox ? { sandbox } : {}) })) : r.interfaces;
	return { cniVersion: version, interfaces, ips: r.ips, routes: r.routes, ...dns };
}

/** VERSION's answer. */
export function versionResult(version: string, supported: readonly string[]): Record<string, unknown> {
	return { cniVersion: version, supportedVersions: [...supported] };
}

/** What CHECK compares the live state with: the parts of prevResult that Weir made. */
export interface Expected {
	hostIf: string;
	podIf: string;
	podMac?: string;
	ip: string;
}

/** Reads Weir's own entries out of a prevResult (any supported version). */
export function expectedFromPrev(prev: Record<string, unknown> | undefined, ifname: string, sandbox: string): Expected {
	if (!prev) throw new CniError(CniCode.InvalidConfig, 'CHECK needs prevResult', 'the runtime passes the ADD result as prevResult');
	const ifs = Array.isArray(prev['interfaces']) ? (prev['interfaces'] as unknown[]).filter(isObject) : [];
	const podIdx = ifs.findIndex((i) => i['name'] === ifname && (i['sandbox'] === sandbox || i['sandbox'] === undefined || !sandbox));
	if (podIdx < 0) throw new CniError(CniCode.InvalidConfig, `prevResult has no interface ${ifname}`, JSON.stringify(prev['interfaces'] ?? null).slice(0, 300));
	const host = ifs.find((i) => typeof i['name'] === 'string' && (i['name'] as string).startsWith('lxc') && !i['sandbox']);
	const ips = Array.isArray(prev['ips']) ? (prev['ips'] as unknown[]).filter(isObject) : [];
	const ipe = ips.find((i) => i['interface'] === podIdx) ?? ips[0];
	if (!ipe || typeof ipe['address'] !== 'string') throw new CniError(CniCode.InvalidConfig, 'prevResult has no address for the pod interface');
	const exp: Expected = {
		hostIf: typeof host?.['name'] === 'string' ? (host['name'] as string) : '',
		podIf: ifname,
		ip: parseInterfaceAddress4(ipe['address']).ip,
	};
	const mac = ifs[podIdx]!['mac'];
	if (typeof mac === 'string' && mac) exp.podMac = mac.toLowerCase();
	return exp;
}
