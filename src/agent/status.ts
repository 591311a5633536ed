// The node agent's status (GET /v1/status): what `weir status` prints per node.
// A pure function assembles it from narrow readers; the fastify plugin only calls it.
import { existsSync } from 'node:fs';
import { packageVersion } from '../shared/package.js';
import { AgentStatus, STATUS_SCHEMA_VERSION } from '../shared/agent-status.js';
import { FastifyInstance, FastifyPluginAsync } from 'fastify';

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
					endpoints: ReadonlyMap<string, { isolatedBy: { ingress: string[]; egress: string[] }; mesh?: { meshed: boolean } }>;
					problems: ReadonlyArray<{ policy: string; message: string }>;
			  }
			| undefined;
	};
	endpoints: { list(): readonly unknown[] };
	/** the socket load balancer, when kube-proxy-replacement is on */
	services?: {
		cgroup: string;
		controller: {
			readonly frontends: number;
			readonly runs: number;
			readonly lastError: string | undefined;
			readonly problems: ReadonlyArray<{ service: string; message: string }>;
		};
	};
	/** the datapath event stream: set once its poller has died (flows stopped) */
	events?: { readonly lastError: string | undefined };
	/** mesh opt-in on this node (src/agent/mesh.ts) */
	mesh?: {
		readonly active: boolean;
		readonly routing: string;
		readonly lastError: string | undefined;
	};
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
	let meshed = 0;
	for (const ep of compiled?.endpoints.values() ?? []) {
		const by = [...ep.isolatedBy.ingress, ...ep.isolatedBy.egress];
		if (by.length) isolated++;
		if (ep.mesh?.meshed) meshed++;
		for (const p of by) enforced.add(p);
	}
	const { ready } = readiness(s);
	const other = s.controller.lastError ?? (errors.length ? errors.join('; ') : undefined);
	const lbError = s.services?.controller.lastError;
	const meshError = s.mesh?.lastError;
	const lastError = [s.events?.lastError, other, lbError && `services: ${lbError}`, meshError && `mesh: ${meshError}`].filter((e) => !!e).join('; ') || null;
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
		endpoints: { local: pick('endpoint source', () => [...s.endpoints.list()]), isolated, meshed },
		policy: {
			networkPolicies: s.watches.policies.list().length,
			enforcedHere: [...enforced].sort(),
			runs: s.controller.runs,
			lastApplied: s.controller.lastApplied?.toISOString() ?? null,
			problems: [...(compiled?.problems ?? [])],
		},
		services: {
			enabled: s.services !== undefined,
			cgroup: s.services?.cgroup ?? null,
			frontends: s.services?.controller.frontends ?? 0,
			runs: s.services?.controller.runs ?? 0,
			problems: [...(s.services?.controller.problems ?? [])],
		},
		mesh: {
			enabled: s.mesh?.active ?? false,
			captureRouting: s.mesh?.routing ?? 'unknown',
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
