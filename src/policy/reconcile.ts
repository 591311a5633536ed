// Applies compiled policy state to the datapath maps as a difference against what the
// maps hold, in an order that never opens a window for traffic that both the old and
// the new state deny:
//   1. new and changed policy entries   (only admit more, under the new state)
//   2. ipcache and endpoint upserts     (identities, isolation and mesh flags switch over)
//   3. removed policy entries, then removed ipcache prefixes
// Anything both states deny is denied at every step: step 1 adds only entries the
// new state wants, and step 3 removes only entries the new state does not want.
import { EndpointInfo, IpcacheValue, PolicyEntry, policyKeys, policyValue } from '../kernel/codecs.js';

/** The narrow slice of Datapath the reconciler needs. */
export interface PolicyMaps {
	ipcacheEntries(): Array<{ cidr: string } & IpcacheValue>;
	setIpcache(cidr: string, identity: number, flags: number): void;
	deleteIpcache(cidr: string): boolean;
	endpointEntries(): Array<{ ip: string } & EndpointInfo>;
	setEndpoint(ip: string, info: EndpointInfo): void;
	deleteEndpoint(ip: string): boolean;
	policyRaw(): Array<[Buffer, Buffer]>;
	putPolicyRaw(key: Buffer, value: Buffer): void;
	deletePolicyRaw(key: Buffer): boolean;
}

/** One policy-map entry; its key is the map key it is stored under (hex). */
export interface TrieEntry {
	value: Buffer;
	ruleId: number;
}

/** Policy entries as trie keys; one key claimed by several rules keeps the lowest rule id. */
export function toTrie(entries: readonly PolicyEntry[]): Map<string, TrieEntry> {
	const out = new Map<string, TrieEntry>();
	const seen = new Set<string>();
	for (const e of entries) {
		// Many rules produce the same entry (same pod, peer, port): encode each once.
		const id = `${e.epId}|${e.identity}|${e.direction}|${e.protocol}|${e.port}|${e.endPort}|${e.ruleId}`;
		if (seen.has(id)) continue;
		seen.add(id);
		let value: Buffer | undefined;
		for (const key of policyKeys(e)) {
			const hex = key.toString('hex');
			const cur = out.get(hex);
			if (!cur || e.ruleId < cur.ruleId) out.set(hex, { value: (value ??= policyValue(e)), ruleId: e.ruleId });
		}
	}
	return out;
}

export interface DesiredMaps {
	/** prefix -> identity */
	ipcache: ReadonlyMap<string, number>;
	/**
	 * IpcacheFlags of prefixes of `ipcache` (Meshed: a meshed pod's address); a prefix
	 * not here, or every prefix when this is absent, has none. An entry whose identity
	 * is unchanged is rewritten when its flags change.
	 */
	ipcacheFlags?: ReadonlyMap<string, number> | undefined;
	/** endpoints whose identity/flags the policy decides (other fields come from the CNI) */
	endpoints: ReadonlyMap<string, EndpointInfo>;
	policy: ReadonlyMap<string, TrieEntry>;
	/** keys of `policy` that may differ from the last apply; undefined: compare all */
	policyChanges?: ReadonlySet<string> | undefined;
	/**
	 * Addresses of every endpoint the CNI holds now. When given, endpoint entries for
	 * other addresses are removed: a pod deleted while a compile was in flight must not
	 * keep an entry that compile wrote back.
	 */
	liveEndpoints?: ReadonlySet<string>;
}

export interface ApplyStats {
	policyAdded: number;
	policyRemoved: number;
	ipcacheSet: number;
	ipcacheRemoved: number;
	endpointsSet: number;
	endpointsRemoved: number;
}

export class MapReconciler {
	private ipcache = new Map<string, number>();
	/** non-zero ipcache flags, by prefix */
	private ipcacheFlags = new Map<string, number>();
	private endpoints = new Map<string, EndpointInfo>();
	private policy = new Map<string, string>();

	constructor(private readonly maps: PolicyMaps) {
		this.resync();
	}

	/** Re-reads what the maps hold (at start, and after any doubt). */
	resync(): void {
		const ipcache = this.maps.ipcacheEntries();
		this.ipcache = new Map(ipcache.map((e) => [e.cidr, e.identity]));
		this.ipcacheFlags = new Map(ipcache.filter((e) => e.flags !== 0).map((e) => [e.cidr, e.flags]));
		this.endpoints = new Map(this.maps.endpointEntries().map(({ ip, ...info }) => [ip, info]));
		this.policy = new Map(this.maps.policyRaw().map(([k, v]) => [k.toString('hex'), v.toString('hex')]));
	}

	/** The ipcache as last read or written. */
	appliedIpcache(): ReadonlyMap<string, number> {
		return this.ipcache;
	}

	apply(desired: DesiredMaps): ApplyStats {
		const stats: ApplyStats = { policyAdded: 0, policyRemoved: 0, ipcacheSet: 0, ipcacheRemoved: 0, endpointsSet: 0, endpointsRemoved: 0 };
		// The CNI writes endpoint entries too (fail-closed at ADD, removal at DEL): read
		// them from the map every time rather than trusting a copy (one batch syscall).
		this.endpoints = new Map(this.maps.endpointEntries().map(({ ip, ...info }) => [ip, info]));
		const changed = desired.policyChanges;
		const candidates: Iterable<string> = changed ?? desired.policy.keys();
		for (const hex of candidates) {
			const e = desired.policy.get(hex);
			if (!e) continue;
			const v = e.value.toString('hex');
			if (this.policy.get(hex) === v) continue;
			this.maps.putPolicyRaw(Buffer.from(hex, 'hex'), e.value);
			this.policy.set(hex, v);
			stats.policyAdded++;
		}
		for (const [cidr, id] of desired.ipcache) {
			const flags = desired.ipcacheFlags?.get(cidr) ?? 0;
			if (this.ipcache.get(cidr) === id && (this.ipcacheFlags.get(cidr) ?? 0) === flags) continue;
			this.maps.setIpcache(cidr, id, flags);
			this.ipcache.set(cidr, id);
			if (flags) this.ipcacheFlags.set(cidr, flags);
			else this.ipcacheFlags.delete(cidr);
			stats.ipcacheSet++;
		}
		for (const [ip, info] of desired.endpoints) {
			const cur = this.endpoints.get(ip);
			if (cur && cur.epId === info.epId && cur.identity === info.identity && cur.ifindex === info.ifindex && cur.flags === info.flags) continue;
			this.maps.setEndpoint(ip, info);
			this.endpoints.set(ip, { ...info });
			stats.endpointsSet++;
		}
		for (const hex of changed ? [...changed] : [...this.policy.keys()]) {
			if (desired.policy.has(hex) || !this.policy.has(hex)) continue;
			this.maps.deletePolicyRaw(Buffer.from(hex, 'hex'));
			this.policy.delete(hex);
			stats.policyRemoved++;
		}
		for (const cidr of [...this.ipcache.keys()]) {
			if (desired.ipcache.has(cidr)) continue;
			this.maps.deleteIpcache(cidr);
			this.ipcache.delete(cidr);
			this.ipcacheFlags.delete(cidr);
			stats.ipcacheRemoved++;
		}
		if (desired.liveEndpoints) {
			for (const ip of [...this.endpoints.keys()]) {
				if (desired.liveEndpoints.has(ip)) continue;
				this.maps.deleteEndpoint(ip);
				this.endpoints.delete(ip);
				stats.endpointsRemoved++;
			}
		}
		return stats;
	}
}
