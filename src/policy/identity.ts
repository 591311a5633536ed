// Security identities: one per distinct (namespace, pod labels, namespace labels)
// set — split further by the longest ipBlock prefix a pod's address lies in, so an
// ipBlock can select pods by address — one per ipBlock prefix, plus the reserved ones. Numbers are stable for the
// allocator's life, so a recompile after one change touches only what changed.
import { Identity } from '../kernel/layout.js';
import { NamespaceInfo, PodInfo } from './model.js';
import { normaliseCidr } from '../shared/ipv4.js';

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

/**
 * What a pod identity stands for: its label set, and the longest ipBlock prefix its
 * address lies in (if any). Two pods with the same labels, one inside an ipBlock and
 * one outside, need different identities, or a rule for the block would admit both.
 */
export function identityKey(labels: Record<string, string>, within?: string): string {
	return within === undefined ? labelKey(labels) : `${labelKey(labels)}@${within}`;
}

export class IdentityAllocator {
	private readonly byLabels = new Map<string, number>();
	private readonly byCidr = new Map<string, number>();
	/** every number ever handed out (never reused for another set) */
	private readonly podIds = new Set<number>();
	private readonly cidrIds = new Set<number>();
	private nextPod: number = Identity.FirstPod;
	private nextCidr: number = Identity.FirstCidr;

	/**
	 * The identity of a label set (inside ipBlock prefix `within`, if given), allocating
	 * one on first sight. `hint` is the number
	 * the datapath already uses for it (read back from the pinned ipcache after a
	 * restart): taking it keeps numbers stable, so a restarted agent never lets one
	 * label set's policy entries apply to another's addresses while it catches up.
	 */
	forLabels(labels: Record<string, string>, hint?: number, within?: string): number {
		const key = identityKey(labels, within);
		let id = this.byLabels.get(key);
		if (id === undefined) {
			if (hint !== undefined && hint >= Identity.FirstPod && hint < Identity.FirstCidr && !this.takenPod(hint)) {
				id = hint;
				this.nextPod = Math.max(this.nextPod, hint + 1);
			} else {
				id = this.nextPod++;
			}
			if (id >= Identity.FirstCidr) throw new Error('pod identity space exhausted');
			this.byLabels.set(key, id);
			this.podIds.add(id);
		}
		return id;
	}

	/** The identity of an ipBlock prefix (normalised: host bits cleared); `hint` as for labels. */
	forCidr(cidr: string, hint?: number): number {
		const key = normaliseCidr(cidr);
		let id = this.byCidr.get(key);
		if (id === undefined) {
			if (hint !== undefined && hint >= Identity.FirstCidr && !this.cidrIds.has(hint)) {
				id = hint;
				this.nextCidr = Math.max(this.nextCidr, hint + 1);
			} else {
				id = this.nextCidr++;
			}
			this.byCidr.set(key, id);
			this.cidrIds.add(id);
		}
		return id;
	}

	private takenPod(id: number): boolean {
		return this.podIds.has(id);
	}

	/** Forgets identity keys and prefixes no longer in use (their numbers are not reused). */
	retain(labelKeys: Set<string>, cidrs: Set<string>): void {
		for (const k of this.byLabels.keys()) if (!labelKeys.has(k)) this.byLabels.delete(k);
		for (const k of this.byCidr.keys()) if (!cidrs.has(k)) this.byCidr.delete(k);
	}
}
