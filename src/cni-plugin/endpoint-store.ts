// The node's CNI endpoints: one record per (container id, interface), written to a
// state file (atomic rename) before every kernel change it describes, so an agent
// that dies in the middle of an ADD leaves a journal its successor can undo.
// Implements the agent's EndpointSource (the policy controller's view of local pods).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LocalEndpoint } from '../shared/endpoint.js';

export interface EndpointRecord {
	containerId: string;
	ifname: string;
	/** CNI_NETNS */
	netns: string;
	/** network name of the config */
	network: string;
	namespace: string;
	pod: string;
	/** host side of the veth */
	hostIf: string;
	hostIfindex: number;
	epId: number;
	ip: string;
	/** 'adding' until ADD completed: a record left in this state is undone at start */
	state: 'adding' | 'ready';
	/** what IPAM DEL needs later: plugin, CNI_PATH, CNI_ARGS, config */
	ipam: { type: string; path: string[]; args: string; conf: Record<string, unknown> };
	/** IPAM ADD was called (so teardown must call DEL) */
	ipamAllocated: boolean;
	createdAt: string;
}

const FILE_VERSION = 1;

export function recordKey(containerId: string, ifname: string): string {
	return `${containerId}/${ifname}`;
}

export class EndpointStore {
	private readonly records = new Map<string, EndpointRecord>();
	private readonly listeners: Array<() => void> = [];

	constructor(readonly file: string) {
		this.load();
	}

	private load(): void {
		let text: string;
		try {
			text = readFileSync(this.file, 'utf8');
		} catch {
			return;
		}
		const o = JSON.parse(text) as { version?: number; endpoints?: EndpointRecord[] };
		if (o.version !== FILE_VERSION || !Array.isArray(o.endpoints)) throw new Error(`${this.file}: unknown state file version ${o.version}`);
		for (const r of o.endpoints) this.records.set(recordKey(r.containerId, r.ifname), r);
	}

	private save(): void {
		mkdirSync(dirname(this.file), { recursive: true });
		const tmp = `${this.file}.tmp-${process.pid}`;
		writeFileSync(tmp, JSON.stringify({ version: FILE_VERSION, endpoints: [...this.records.values()] }, null, 1));
		renameSync(tmp, this.file);
	}

	private changed(): void {
		for (const cb of this.listeners) cb();
	}

	get(containerId: string, ifname: string): EndpointRecord | undefined {
		return this.records.get(recordKey(containerId, ifname));
	}

	all(): EndpointRecord[] {
		return [...this.records.values()];
	}

	/** Writes (creates or replaces) a record and persists it before returning. */
	put(r: EndpointRecord): void {
		this.records.set(recordKey(r.containerId, r.ifname), { ...r });
		this.save();
		if (r.state === 'ready') this.changed();
	}

	remove(containerId: string, ifname: string): boolean {
		const r = this.records.get(recordKey(containerId, ifname));
		if (!r) return false;
		this.records.delete(recordKey(containerId, ifname));
		this.save();
		if (r.state === 'ready') this.changed();
		return true;
	}

	/** Smallest endpoint id (1..65535) not held by any record. */
	allocateEpId(): number {
		const used = new Set([...this.records.values()].map((r) => r.epId));
		for (let id = 1; id <= 0xffff; id++) if (!used.has(id)) return id;
		throw new Error('no free endpoint id (65535 endpoints on this node)');
	}

	// EndpointSource
	list(): LocalEndpoint[] {
		return [...this.records.values()]
			.filter((r) => r.state === 'ready')
			.map((r) => ({ namespace: r.namespace, pod: r.pod, ip: r.ip, epId: r.epId, ifindex: r.hostIfindex, netns: r.netns }));
	}

	onChange(cb: () => void): void {
		this.listeners.push(cb);
	}
}
