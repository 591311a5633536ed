// The relay's flow query: its JSON schema (fastify validates it; a malformed query is a
// 400 naming the parameter and what it takes) and its translation into a filter.
//   GET /v1/flows?namespace=&pod=&label=&identity=&port=&workload=
//                 &from-namespace=&from-pod=&from-label=&from-identity=&from-port=&from-workload=
//                 &to-namespace=&to-pod=&to-label=&to-identity=&to-port=&to-workload=
//                 &not-from-…=&not-to-…=   (the same fields; those flows are left out)
//                 &reserved=&from-reserved=&to-reserved=   (host, remote-node, world, cidr:…)
//                 &verdict=&drop-reason=&protocol=&node=&since=&until=&first=&last=&follow=
// Every filter parameter may be repeated: its values are alternatives. `limit` is the
// node API's name for `last` and is accepted as such.
import type { FastifySchemaValidationError } from 'fastify';
import type { FlowVerdict } from '../observe/flow.js';
import { emptyFilter, type EndpointFilter, type RelayFilter } from './filter.js';

export const VERDICTS: readonly FlowVerdict[] = ['FORWARDED', 'DROPPED', 'AUDIT'];
export const PROTOCOLS = ['TCP', 'UDP', 'SCTP', 'ICMPv4'] as const;
/** flows a query returns at most without follow (the relay's history holds no more anyway) */
export const MAX_FLOWS = 100_000;
export const DEFAULT_LAST = 100;

type Scalar = { type: 'string' | 'integer' | 'boolean'; enum?: readonly string[]; minimum?: number; maximum?: number; format?: 'date-time'; pattern?: string };
type Param = Scalar | { type: 'array'; items: Scalar };

const str: Scalar = { type: 'string' };
const list = (items: Scalar): Param => ({ type: 'array', items });
const identity: Scalar = { type: 'integer', minimum: 0, maximum: 0xffffffff };
const port: Scalar = { type: 'integer', minimum: 0, maximum: 65535 };
const count: Scalar = { type: 'integer', minimum: 0, maximum: MAX_FLOWS };
const time: Scalar = { type: 'string', format: 'date-time' };

const ENDPOINT_FIELDS = { namespace: str, pod: str, label: str, identity, port, workload: str, reserved: str } as const;

function endpointParams(prefix: string): Record<string, Param> {
	return Object.fromEntries(Object.entries(ENDPOINT_FIELDS).map(([k, s]) => [`${prefix}${k}`, list(s)]));
}

export const FLOW_QUERY_PARAMS: Record<string, Param> = {
	...endpointParams(''),
	...endpointParams('from-'),
	...endpointParams('to-'),
	...endpointParams('not-from-'),
	...endpointParams('not-to-'),
	verdict: list({ type: 'string', enum: VERDICTS }),
	'drop-reason': list({ type: 'string', pattern: '^[A-Za-z0-9_]+$' }),
	protocol: list({ type: 'string', enum: PROTOCOLS }),
	node: list(str),
	since: time,
	until: time,
	first: count,
	last: count,
	limit: count,
	follow: { type: 'boolean' },
	/** false leaves out reply flows */
	replies: { type: 'boolean' },
};

export const FLOW_QUERY_SCHEMA = { type: 'object', properties: FLOW_QUERY_PARAMS } as const;

/** The query after validation (arrays coerced, types coerced). */
export type FlowQuery = Partial<Record<string, unknown>> & {
	since?: string;
	until?: string;
	first?: number;
	last?: number;
	limit?: number;
	follow?: boolean;
	replies?: boolean;
};

export class BadQueryError extends Error {
	readonly code = 'WEIR_ERR_BAD_QUERY';
	readonly statusCode = 400;
}

function describe(s: Scalar): string {
	if (s.enum) return `one of ${s.enum.join(', ')}`;
	if (s.type === 'integer') return `an integer from ${s.minimum} to ${s.maximum}`;
	if (s.format === 'date-time') return 'an RFC 3339 date-time with a time zone, e.g. 2026-01-01T12:00:00Z';
	if (s.type === 'boolean') return 'true or false';
	if (s.pattern) return 'a name of letters, digits and underscores, e.g. POLICY_DENIED';
	return 'a string';
}

/** A schema error as a 400 that names the parameter and what it takes. */
export function badQuery(errors: FastifySchemaValidationError[]): BadQueryError {
	const e = errors[0];
	const name = (e?.instancePath ?? '').split('/')[1] ?? '';
	const p = FLOW_QUERY_PARAMS[name];
	if (!p) return new BadQueryError(`bad query: ${e?.message ?? 'invalid'}`);
	const s = p.type === 'array' ? p.items : p;
	return new BadQueryError(`${name} must be ${describe(s)}${p.type === 'array' ? ' (repeat the parameter for alternatives)' : ''}`);
}

/**
 * What the schema cannot say: unknown parameters (fastify would drop them silently),
 * and canonical case for verdict and protocol. Throws BadQueryError.
 */
export function preValidate(q: Record<string, unknown>, known: Record<string, unknown> = FLOW_QUERY_PARAMS): void {
	const unknown = Object.keys(q).filter((k) => !(k in known));
	if (unknown.length) throw new BadQueryError(`unknown query parameter ${unknown.map((k) => `'${k}'`).join(', ')} (known: ${Object.keys(known).join(', ')})`);
	for (const [name, values] of [
		['verdict', VERDICTS],
		['protocol', PROTOCOLS],
	] as const) {
		const canon = (v: unknown): unknown => (typeof v === 'string' ? (values.find((c) => c.toLowerCase() === v.toLowerCase()) ?? v) : v);
		const v = q[name];
		q[name] = Array.isArray(v) ? v.map(canon) : canon(v);
		if (q[name] === undefined) delete q[name];
	}
}

function endpointFilter(q: FlowQuery, prefix: string): EndpointFilter {
	const f: EndpointFilter = {};
	for (const k of Object.keys(ENDPOINT_FIELDS) as Array<keyof typeof ENDPOINT_FIELDS>) {
		const v = q[`${prefix}${k}`];
		if (Array.isArray(v) && v.length) (f as Record<string, unknown[]>)[k] = v;
	}
	return f;
}

export interface FlowRequest {
	filter: RelayFilter;
	/** the oldest n matching flows */
	first?: number;
	/** the newest n matching flows (default 100 unless `since` or `first` is given) */
	last?: number;
	follow: boolean;
}

/** A validated query as what the relay should answer; combinations that make no sense are a BadQueryError. */
export function toRequest(q: FlowQuery): FlowRequest {
	const filter = emptyFilter();
	filter.any = endpointFilter(q, '');
	filter.from = endpointFilter(q, 'from-');
	filter.to = endpointFilter(q, 'to-');
	const notFrom = endpointFilter(q, 'not-from-');
	const notTo = endpointFilter(q, 'not-to-');
	if (Object.keys(notFrom).length) filter.notFrom = notFrom;
	if (Object.keys(notTo).length) filter.notTo = notTo;
	for (const [param, key] of [
		['verdict', 'verdict'],
		['drop-reason', 'dropReason'],
		['protocol', 'protocol'],
		['node', 'node'],
	] as const) {
		const v = q[param];
		if (Array.isArray(v) && v.length) (filter as unknown as Record<string, unknown[]>)[key] = v;
	}
	if (q.since !== undefined) filter.since = Date.parse(q.since);
	if (q.until !== undefined) filter.until = Date.parse(q.until);
	if (q.replies === false) filter.replies = false;
	if (filter.since !== undefined && filter.until !== undefined && filter.until < filter.since) throw new BadQueryError('until must not be before since');
	const last = q.last ?? q.limit;
	if (q.first !== undefined && last !== undefined) throw new BadQueryError('first and last cannot be combined: ask for the oldest or the newest flows');
	const follow = q.follow ?? false;
	if (follow && q.until !== undefined) throw new BadQueryError('until cannot be combined with follow: a followed stream has no end');
	if (follow && q.first !== undefined) throw new BadQueryError('first cannot be combined with follow: use since to start the stream at a time');
	const req: FlowRequest = { filter, follow };
	if (q.first !== undefined) req.first = q.first;
	else if (last !== undefined) req.last = last;
	else if (q.since === undefined) req.last = DEFAULT_LAST;
	return req;
}
