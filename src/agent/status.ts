// The node agent's status (GET /v1/status): what `weir status` prints per node.
// A pure function assembles it from narrow readers; the fastify plugin only calls it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../paths.js';
import { FastifyInstance, FastifyPluginAsync } from 'fastify';

export const STATUS_SCHEMA_VERSION = 1;

export interface AgentStatus {
	schema: typeof STATUS_SCHEMA_VERSION;
	node: string;
	/** the agent's package version (image version) */
	version: string;
	startedAt: string;
	/** same meaning as /readyz */
	ready: boolean;
	/** the Kubernetes watches have listed everything once */
	synced: boolean;
	datapath: {
		/** programs loaded and maps pinned under pinRoot */
		loaded: boolean;
		pinRoot: string;
		/** pod veths with the programs attached (pinned links) */
		attachments: number;
		ipcacheEntries: number;
		endpointEntries: number;
		policyEntries: number;
	};
	endpoints: {
		/** pods on this node known to the agent (CNI) */
		local: number;
		/** of those, isolated by at least one NetworkPolicy (either direction) */
		isolated: number;
	};
	policy: {
		/** NetworkPolicies in the cluster (all namespaces) */
		networkPolicies: number;
		/** NetworkPolicies that select at least one pod of this node: enforced here */
		enforcedHere: string[];
		/** compile/apply runs so far and the time of the last successful one */
		runs: number;
		lastApplied: string | null;
		/** policies or rules the datapath cannot enforce as written */
		problems: Array<{ policy: string; message: string }>;
	};
	/** the last error the agent hit (datapath events, policy compile/apply, map reads), null when healthy */
	lastError: string | null;
}

/** What the status needs to read; each a narrow view, no write access. */
export interface StatusSources {
	node: string;
	/** default: package.json's version */
	version?: string;
	startedAt: Date;
	pinRoot: string;
	datapath: {
		pinnedAttachments(): number[];
		ipcacheEntries(): unknown[];
		endpointEntries(): unknown[];
		policyEntryCount(): number;
	};
	watches: { readonly isSynced: boolean; policies: { list(): readonly unknown[] } };
	controller: {
		readonly runs: number;
		readonly lastError: string | undefined;
		readonly lastApplied: Date | undefined;
		readonly compiled:
			| {
					endpoints: ReadonlyMap<string, { isolatedBy: { ingress: string[]; egress: string[] } }>;
					problems: ReadonlyArray<{ policy: string; message: string }>;
			  }
			| undefined;
	};
	endpoints: { list(): readonly unknown[] };
	/** the datapath event stream: set once its poller has died (flows stopped) */
	events?: { readonly lastError: string | undefined };
}

export interface Readiness {
	ready: boolean;
	synced: boolean;
	lastError: string | null;
}

/** /readyz (and the status's `ready`): watches synced, policy applied, datapath events flowing. */
export function readiness(s: Pick<StatusSources, 'watches' | 'controller' | 'events'>): Readiness {
	const eventsError = s.events?.lastError;
	return {
		ready: s.watches.isSynced && s.controller.runs > 0 && eventsError === undefined,
		synced: s.watches.isSynced,
		lastError: [eventsError, s.controller.lastError].filter((e) => e !== undefined).join('; ') || null,
	};
}

let cachedVersion: string | undefined;

/** The version in the package's package.json (the image ships it). */
export function packageVersion(): string {
	if (cachedVersion === undefined) {
		try {
			cachedVersion = String((JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown');
		} catch {
			cachedVersion = 'unknown';
		}
	}
	return cachedVersion;
}

function count(f: () => unknown[] | number): { n: number; err?: string } {
	try {
		const v = f();
		return { n: typeof v === 'number' ? v : v.length };
	} catch (err) {
		return { n: 0, err: (err as Error).message };
	}
}

/** Assembles the status; never throws (a failing reader becomes lastError). */
export function agentStatus(s: StatusSources): AgentStatus {
	const errors: string[] = [];
	const pick = (what: string, f: () => unknown[] | number): number => {
		const r = count(f);
		if (r.err) errors.push(`${what}: ${r.err}`);
		return r.n;
	};
	const attachments = pick('datapath links', () => s.datapath.pinnedAttachments());
	const ipcacheEntries = pick('ipcache map', () => s.datapath.ipcacheEntries());
	const endpointEntries = pick('endpoints map', () => s.datapath.endpointEntries());
	const policyEntries = pick('policy map', () => s.datapath.policyEntryCount());
	const compiled = s.controller.compiled;
	const enforced = new Set<string>();
	let isolated = 0;
	for (const ep of compiled?.endpoints.values() ?? []) {
		const by = [...ep.isolatedBy.ingress, ...ep.isolatedBy.egress];
		if (by.length) isolated++;
		for (const p of by) enforced.add(p);
	}
	const { ready } = readiness(s);
	const other = s.controller.lastError ?? (errors.length ? errors.join('; ') : undefined);
	const lastError = [s.events?.lastError, other].filter((e) => e !== undefined).join('; ') || null;
	return {
		schema: STATUS_SCHEMA_VERSION,
		node: s.node,
		version: s.version ?? packageVersion(),
		startedAt: s.startedAt.toISOString(),
		ready,
		synced: s.watches.isSynced,
		datapath: {
			loaded: errors.length === 0 && existsSync(s.pinRoot),
			pinRoot: s.pinRoot,
			attachments,
			ipcacheEntries,
			endpointEntries,
			policyEntries,
		},
		endpoints: { local: pick('endpoint source', () => [...s.endpoints.list()]), isolated },
		policy: {
			networkPolicies: s.watches.policies.list().length,
			enforcedHere: [...enforced].sort(),
			runs: s.controller.runs,
			lastApplied: s.controller.lastApplied?.toISOString() ?? null,
			problems: [...(compiled?.problems ?? [])],
		},
		lastError,
	};
}

export interface StatusApiOptions {
	sources: StatusSources;
}

/** GET /v1/status */
export const statusApi: FastifyPluginAsync<StatusApiOptions> = async (app: FastifyInstance, opts) => {
	app.get('/v1/status', async () => agentStatus(opts.sources));
};
