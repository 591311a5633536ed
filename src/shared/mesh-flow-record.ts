// The ztunnel's connection records: one NDJSON line per event of a proxied connection
// (opened, closed, refused), sent by weir-ztunnel to its node's agent over a unix
// socket (src/ztunnel/flows.ts → src/observe/mesh-flow.ts), which adds each to the
// node's flows. The contract between the two processes, and its validation: the agent
// takes nothing off the socket it has not checked here. Versioned by `v`; fields a
// newer ztunnel adds are ignored.
import { isIpv4 } from './ipv4.js';

export const MESH_FLOW_RECORD_VERSION = 1;

/**
 * Why the ztunnel refused a connection: the drop reason of its flow. Stable names (a
 * retired one is kept, never reused), like the datapath's (native/bpf/shared/
 * weir_drop_reasons.h), but the ztunnel's own: no datapath code stands behind them.
 */
export const MESH_DROP_REASONS = {
	AUTHZ_DENIED: 'an AuthorizationPolicy denies the connection at the destination',
	MTLS_FAILED: 'mutual TLS could not be established, or an identity did not match its certificate or address',
	DESTINATION_UNAVAILABLE: 'the destination pod refused the connection or did not answer',
	HBONE_REFUSED: 'the ztunnel could not carry the connection over HBONE',
} as const;

export type MeshDropReason = keyof typeof MESH_DROP_REASONS;

export interface MeshFlowRecordEnd {
	ip: string;
	/** 0 where the reporter does not know it (the destination's ztunnel never learns the client's port) */
	port: number;
	/** SPIFFE ID */
	identity?: string;
	/** the pod, as the ztunnel's workload state names it (the agent prefers its own) */
	namespace?: string;
	pod?: string;
	workload?: string;
}

export interface MeshFlowRecord {
	v: typeof MESH_FLOW_RECORD_VERSION;
	/** RFC 3339, ms precision: when the event happened */
	time: string;
	/** the reporting ztunnel's node */
	node: string;
	event: 'open' | 'close' | 'refused';
	reporter: 'source' | 'destination';
	security: 'mutual_tls' | 'none';
	source: MeshFlowRecordEnd;
	destination: MeshFlowRecordEnd;
	/** (close) */
	bytesSent?: number;
	bytesReceived?: number;
	durationMs?: number;
	/** 'namespace/name' of the AuthorizationPolicy that decided */
	authorizationPolicy?: string;
	/** (refused) */
	dropReason?: MeshDropReason;
	/** (refused) the HBONE answer's HTTP status or a WEIR_ERR_* code */
	code?: string;
	/** (refused) why; (close) the error that ended it, if one did */
	reason?: string;
}

/** The longest line the agent reads: a record is a few hundred bytes. */
export const MAX_RECORD_BYTES = 16 * 1024;

const MAX_TEXT = 2048;
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const POLICY = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

export class MeshFlowRecordError extends Error {
	readonly code = 'WEIR_ERR_MESH_FLOW_RECORD';
	override readonly name = 'MeshFlowRecordError';
}

function fail(msg: string): never {
	throw new MeshFlowRecordError(msg);
}

function oneOf<T extends string>(o: Record<string, unknown>, k: string, values: readonly T[]): T {
	const v = o[k];
	if (typeof v !== 'string' || !values.includes(v as T)) fail(`${k} must be one of ${values.join(', ')}`);
	return v as T;
}

function text(o: Record<string, unknown>, k: string, max = MAX_TEXT): string | undefined {
	const v = o[k];
	if (v === undefined) return undefined;
	if (typeof v !== 'string' || v.length === 0 || v.length > max) fail(`${k} must be a string of 1 to ${max} characters`);
	return v;
}

function count(o: Record<string, unknown>, k: string): number | undefined {
	const v = o[k];
	if (v === undefined) return undefined;
	if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`${k} must be a whole number`);
	return v;
}

function end(o: Record<string, unknown>, k: 'source' | 'destination'): MeshFlowRecordEnd {
	const e = o[k];
	if (typeof e !== 'object' || e === null || Array.isArray(e)) fail(`${k} must be an object`);
	const r = e as Record<string, unknown>;
	const ip = r['ip'];
	if (typeof ip !== 'string' || !isIpv4(ip)) fail(`${k}.ip must be an IPv4 address`);
	const port = r['port'];
	if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) fail(`${k}.port must be an integer from 0 to 65535`);
	const out: MeshFlowRecordEnd = { ip, port };
	const identity = text(r, 'identity', 512);
	if (identity !== undefined) {
		if (!identity.startsWith('spiffe://')) fail(`${k}.identity must be a SPIFFE ID`);
		out.identity = identity;
	}
	for (const f of ['namespace', 'pod', 'workload'] as const) {
		const v = text(r, f, 253);
		if (v === undefined) continue;
		if (!NAME.test(v)) fail(`${k}.${f} must be a Kubernetes name`);
		out[f] = v;
	}
	return out;
}

/**
 * One line off the socket, checked: the record, or a MeshFlowRecordError naming the
 * first field that is wrong. Pure.
 */
export function parseMeshFlowRecord(line: string): MeshFlowRecord {
	if (line.length > MAX_RECORD_BYTES) fail(`the line is longer than ${MAX_RECORD_BYTES} bytes`);
	let o: unknown;
	try {
		o = JSON.parse(line);
	} catch (err) {
		fail(`not JSON (${(err as Error).message})`);
	}
	if (typeof o !== 'object' || o === null || Array.isArray(o)) fail('not a JSON object');
	const r = o as Record<string, unknown>;
	if (r['v'] !== MESH_FLOW_RECORD_VERSION) fail(`v must be ${MESH_FLOW_RECORD_VERSION} (this agent reads version ${MESH_FLOW_RECORD_VERSION} records)`);
	const time = r['time'];
	if (typeof time !== 'string' || !RFC3339.test(time) || !Number.isFinite(Date.parse(time))) fail('time must be an RFC 3339 date-time');
	const node = text(r, 'node', 253);
	if (node === undefined) fail('node is missing');
	const rec: MeshFlowRecord = {
		v: MESH_FLOW_RECORD_VERSION,
		time,
		node,
		event: oneOf(r, 'event', ['open', 'close', 'refused'] as const),
		reporter: oneOf(r, 'reporter', ['source', 'destination'] as const),
		security: oneOf(r, 'security', ['mutual_tls', 'none'] as const),
		source: end(r, 'source'),
		destination: end(r, 'destination'),
	};
	for (const k of ['bytesSent', 'bytesReceived', 'durationMs'] as const) {
		const v = count(r, k);
		if (v !== undefined) rec[k] = v;
	}
	const policy = text(r, 'authorizationPolicy', 507);
	if (policy !== undefined) {
		if (!POLICY.test(policy)) fail('authorizationPolicy must be namespace/name');
		rec.authorizationPolicy = policy;
	}
	if (rec.event === 'refused') rec.dropReason = oneOf(r, 'dropReason', Object.keys(MESH_DROP_REASONS) as MeshDropReason[]);
	else if (r['dropReason'] !== undefined) fail(`dropReason is for refusals, not ${rec.event}`);
	const code = text(r, 'code', 64);
	if (code !== undefined) rec.code = code;
	const reason = text(r, 'reason');
	if (reason !== undefined) rec.reason = reason;
	return rec;
}
