// Applies compiled policy state to the datapath maps as a difference against what the
// maps hold, in an order that never opens a window for traffic that both the old and
// the new state deny:
//   1. new and changed policy entries   (only admit more, under the new state);
//      port mTLS entries that make a port stricter (STRICT written, PERMISSIVE removed)
//   2. ipcache and endpoint upserts     (identities, isolation, mesh and mTLS flags switch over)
//   3. removed policy entries, then removed ipcache prefixes; port mTLS entries that
//      make a port more permissive (PERMISSIVE written, STRICT removed)
// Anything both states deny is denied at every step: step 1 adds only entries the
// new state wants, and step 3 removes only entries the new state does not want. For
// PeerAuthentication no step admits plaintext to a port that either state makes
// STRICT before the endpoint's flags say so: what loosens a port waits for step 3,
// so an entry left by a deleted pod whose endpoint id a new pod took never loosens it.
import { EndpointInfo, IpcacheValue, MtlsPortEntry, PolicyEntry, policyKeys, policyValue } from '../kernel/codecs.js';
import { MtlsPortMode } from '../kernel/layout.js';

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
	mtlsPortEntries(): MtlsPortEntry[];
	setMtlsPort(epId: number, port: number, mode: number): void;
	deleteMtlsPort(epId: number, port: number): boolean;
}

/** The key of a port mTLS entry in DesiredMaps.mtlsPorts. */
export function mtlsPortId(epId: number, port: number): string {
	return `${epId}:${port}`;
}

function parseMtlsPortId(id: string): [number, number] {
	const [ep, port] = id.split(':');
	return [Number(ep), Number(port)];
}

const isStrict = (mode: number | undefined): boolean => mode !== undefined && mode !== MtlsPortMode.Permissive;

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
	 * mtlsPortId(epId, port) -> MtlsPortMode: ports whose mode is their own
	 * (weir_mtls_ports); absent: none, every entry the map holds is removed.
	 */
	mtlsPorts?: ReadonlyMap<string, number>;
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
	mtlsPortsSet: number;
	mtlsPortsRemoved: number;
}

export class MapReconciler {
	private ipcache = new Map<string, number>();
	/** non-zero ipcache flags, by prefix */
	private ipcacheFlags = new Map<string, number>();
	private endpoints = new Map<string, EndpointInfo>();
	private policy = new Map<string, string>();
	/** mtlsPortId -> mode, as the map holds it */
	private mtlsPorts = new Map<string, number>();

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
		this.mtlsPorts = new Map(this.maps.mtlsPortEntries().map((e) => [mtlsPortId(e.epId, e.port), e.mode]));
	}

	/**
	 * Port mTLS entries of one kind of change: `stricter` those that make their port
	 * stricter (a STRICT entry written, a PERMISSIVE one removed), else the others.
	 */
	private applyMtlsPorts(desired: ReadonlyMap<string, number>, stricter: boolean, stats: ApplyStats): void {
		for (const [id, mode] of desired) {
			if (this.mtlsPorts.get(id) === mode || isStrict(mode) !== stricter) continue;
			const [ep, port] = parseMtlsPortId(id);
			this.maps.setMtlsPort(ep, port, mode);
			this.mtlsPorts.set(id, mode);
			stats.mtlsPortsSet++;
		}
		for (const [id, mode] of [...this.mtlsPorts]) {
			if (desired.has(id) || isStrict(mode) === stricter) continue;
			const [ep, port] = parseMtlsPortId(id);
			this.maps.deleteMtlsPort(ep, port);
			this.mtlsPorts.delete(id);
			stats.mtlsPortsRemoved++;
		}
	}

	/** The ipcache as last read or written. */
	appliedIpcache(): ReadonlyMap<string, number> {
		return this.ipcache;
	}

	apply(desired: DesiredMaps): ApplyStats {
		const stats: ApplyStats = {
			policyAdded: 0,
			policyRemoved: 0,
			ipcacheSet: 0,
			ipcacheRemoved: 0,
			endpointsSet: 0,
			endpointsRemoved: 0,
			mtlsPortsSet: 0,
			mtlsPortsRemoved: 0,
		};
		const mtlsPorts = desired.mtlsPorts ?? new Map<string, number>();
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
		this.applyMtlsPorts(mtlsPorts, true, stats);
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
		this.applyMtlsPorts(mtlsPorts, false, stats);
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
