// Security identities: one per distinct (namespace, pod labels, namespace labels)
// set, one per ipBlock prefix, plus the reserved ones. Numbers are stable for the
// allocator's life, so a recompile after one change touches only what changed.
import { Identity } from '../bpf/layout.js';
import { parseCidr4 } from '../bpf/codecs.js';
import { NamespaceInfo, PodInfo } from './model.js';

/** Labels that carry the namespace into a pod's identity (Cilium's convention). */
export const NS_NAME_LABEL = 'io.kubernetes.pod.namespace';
export const NS_LABEL_PREFIX = 'io.cilium.k8s.namespace.labels.';

/** The full label set that decides a pod's identity. */
export function identityLabels(pod: PodInfo, ns: NamespaceInfo | undefined): Record<string, string> {
	const out: Record<string, string> = { ...pod.labels, [NS_NAME_LABEL]: pod.namespace };
	for (const [k, v] of Object.entries(ns?.labels ?? {})) out[`${NS_LABEL_PREFIX}${k}`] = v;
	return out;
}

export function labelKey(labels: Record<string, string>): string {
	return Object.keys(labels)
		.sort()
		.map((k) => `${k}=${labels[k]}`)
		.join(',');
}

export class IdentityAllocator {
	private readonly byLabels = new Map<string, number>();
	private readonly byCidr = new Map<string, number>();
	private nextPod: number = Identity.FirstPod;
	private nextCidr: number = Identity.FirstCidr;

	/** The identity of a label set, allocating one on first sight. */
	forLabels(labels: Record<string, string>): number {
		const key = labelKey(labels);
		let id = this.byLabels.get(key);
		if (id === undefined) {
			id = this.nextPod++;
			if (id >= Identity.FirstCidr) throw new Error('pod identity space exhausted');
			this.byLabels.set(key, id);
		}
		return id;
	}

	/** The identity of an ipBlock prefix (normalised: host bits cleared). */
	forCidr(cidr: string): number {
		const key = normaliseCidr(cidr);
		let id = this.byCidr.get(key);
		if (id === undefined) {
			id = this.nextCidr++;
			this.byCidr.set(key, id);
		}
		return id;
	}

	/** Forgets label sets and prefixes no longer in use (their numbers are not reused). */
	retain(labelKeys: Set<string>, cidrs: Set<string>): void {
		for (const k of this.byLabels.keys()) if (!labelKeys.has(k)) this.byLabels.delete(k);
		for (const k of this.byCidr.keys()) if (!cidrs.has(k)) this.byCidr.delete(k);
	}
}

export function normaliseCidr(cidr: string): string {
	const c = parseCidr4(cidr);
	return `${[(c.addr >>> 24) & 255, (c.addr >>> 16) & 255, (c.addr >>> 8) & 255, c.addr & 255].join('.')}/${c.prefix}`;
}

/** True when prefix `inner` lies inside prefix `outer` (both normalised or not). */
export function cidrWithin(inner: string, outer: string): boolean {
	const i = parseCidr4(inner);
	const o = parseCidr4(outer);
	if (i.prefix < o.prefix) return false;
	const mask = o.prefix === 0 ? 0 : (0xffffffff << (32 - o.prefix)) >>> 0;
	return ((i.addr & mask) >>> 0) === o.addr;
}
