// A TypeScript model of the pod programs' decision for a new connection, over the
// compiler's output: used by unit tests to check the compiler against the reference
// evaluator quickly, before the real datapath is asked the same questions.
import { PolicyEntry } from '../../src/kernel/codecs.js';
import { ipv4ToInt, parseCidr4 } from '../../src/shared/ipv4.js';
import { Dir, EndpointFlags, Identity } from '../../src/kernel/layout.js';
import { Compiled } from '../../src/policy/compiler.js';

function lpm(ipcache: ReadonlyMap<string, number>, ip: string): number {
	const a = ipv4ToInt(ip);
	let best = -1;
	let id: number = Identity.World;
	for (const [cidr, identity] of ipcache) {
		const c = parseCidr4(cidr);
		const mask = c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0;
		if ((a & mask) >>> 0 === c.addr && c.prefix > best) {
			best = c.prefix;
			id = identity;
		}
	}
	return id;
}

function entryAllows(e: PolicyEntry, protocol: number, port: number): boolean {
	if (e.protocol === undefined) return true;
	if (e.protocol !== protocol) return false;
	if (e.port === undefined) return true;
	return port >= e.port && port <= (e.endPort ?? e.port);
}

export function modelAllows(c: Compiled, src: string, dst: string, protocol: number, port: number, allowHost = true): boolean {
	const lookup = (epId: number, peer: number, dir: number): boolean =>
		c.entries.some((e) => e.epId === epId && e.direction === dir && (e.identity === peer || e.identity === Identity.Unknown) && entryAllows(e, protocol, port));
	const s = c.endpoints.get(src);
	if (s && s.flags & EndpointFlags.EgressIsolated && !lookup(s.epId, lpm(c.ipcache, dst), Dir.Egress)) return false;
	const d = c.endpoints.get(dst);
	if (d && d.flags & EndpointFlags.IngressIsolated) {
		const peer = lpm(c.ipcache, src);
		if (!(allowHost && peer === Identity.Host) && !lookup(d.epId, peer, Dir.Ingress)) return false;
	}
	return true;
}
