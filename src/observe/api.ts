// The node's observer API (fastify plugin): recent flows with filters, and live follow
// as newline-delimited JSON.
//   GET /v1/flows?namespace=&pod=&verdict=&port=&protocol=&since=&limit=&follow=true
// The query is validated by the route's JSON schema; a bad parameter is a 400 that
// names it and says what it takes.
import { FastifyInstance, FastifyPluginAsync, FastifySchemaValidationError } from 'fastify';
import { FlowFilter, FlowVerdict, matchesFilter } from './flow.js';
import { FlowRing } from './flow-ring.js';
import { FollowSink } from '../shared/follow-sink.js';
import type { FlowsResponse } from '../shared/wire.js';

/** lines held per follower while it reads slowly */
const FOLLOW_QUEUE = 4096;

export interface ObserveApiOptions {
	ring: FlowRing;
}

const VERDICTS: readonly FlowVerdict[] = ['FORWARDED', 'DROPPED', 'AUDIT'];
const PROTOCOLS = ['TCP', 'UDP', 'SCTP', 'ICMPv4'] as const;

interface ParamSchema {
	type: 'string' | 'integer' | 'boolean';
	enum?: readonly string[];
	minimum?: number;
	maximum?: number;
	format?: 'date-time';
	default?: unknown;
}

const FLOW_QUERY_PARAMS = {
	namespace: { type: 'string' },
	/** 'name' or 'namespace/name' */
	pod: { type: 'string' },
	verdict: { type: 'string', enum: VERDICTS },
	port: { type: 'integer', minimum: 0, maximum: 65535 },
	protocol: { type: 'string', enum: PROTOCOLS },
	since: { type: 'string', format: 'date-time' },
	limit: { type: 'integer', minimum: 0, maximum: 100_000, default: 100 },
	follow: { type: 'boolean', default: false },
} satisfies Record<string, ParamSchema>;

/** The query after validation (coerced types, defaults applied). */
export interface FlowQuery {
	namespace?: string;
	pod?: string;
	verdict?: FlowVerdict;
	port?: number;
	protocol?: (typeof PROTOCOLS)[number];
	since?: string;
	limit: number;
	follow: boolean;
}

export class BadQueryError extends Error {
	readonly code = 'WEIR_ERR_BAD_QUERY';
	readonly statusCode = 400;
}

function expected(s: ParamSchema): string {
	if (s.enum) return `one of ${s.enum.join(', ')}`;
	if (s.type === 'integer') return `an integer from ${s.minimum} to ${s.maximum}`;
	if (s.format === 'date-time') return 'an RFC 3339 date-time with a time zone, e.g. 2026-01-01T12:00:00Z';
	if (s.type === 'boolean') return 'true or false';
	return 'a single string';
}

/** The route's schema error as a 400 naming the parameter and what it takes. */
function badQuery(errors: FastifySchemaValidationError[]): BadQueryError {
	const e = errors[0];
	const name = (e?.instancePath ?? '').replace(/^\//, '');
	const param = (FLOW_QUERY_PARAMS as Record<string, ParamSchema>)[name];
	return new BadQueryError(param ? `${name} must be ${expected(param)}` : `bad query: ${e?.message ?? 'invalid'}`);
}

/** verdict and protocol are matched whatever their case: the schema sees their canonical spelling. */
function canonicalCase(q: Record<string, unknown>): void {
	for (const [name, values] of [
		['verdict', VERDICTS],
		['protocol', PROTOCOLS],
	] as const) {
		const v = q[name];
		if (typeof v === 'string') q[name] = values.find((c) => c.toLowerCase() === v.toLowerCase()) ?? v;
	}
}

export function toFilter(q: FlowQuery): FlowFilter {
	const filter: FlowFilter = {};
	if (q.namespace) filter.namespace = q.namespace;
	if (q.pod) filter.pod = q.pod;
	if (q.protocol) filter.protocol = q.protocol;
	if (q.verdict) filter.verdict = q.verdict;
	if (q.port !== undefined) filter.port = q.port;
	if (q.since !== undefined) filter.since = Date.parse(q.since);
	return filter;
}

export const observeApi: FastifyPluginAsync<ObserveApiOptions> = async (app: FastifyInstance, opts) => {
	app.get<{ Querystring: FlowQuery }>(
		'/v1/flows',
		{
			schema: { querystring: { type: 'object', properties: FLOW_QUERY_PARAMS } },
			schemaErrorFormatter: badQuery,
			preValidation: async (req) => canonicalCase(req.query as unknown as Record<string, unknown>),
		},
		async (req, reply) => {
			const filter = toFilter(req.query);
			const past = opts.ring.recent(filter, req.query.limit);
			if (!req.query.follow) return { flows: past } satisfies FlowsResponse;
			reply.hijack();
			const res = reply.raw;
			res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
			// Headers now, not with the first flow: a follower (the relay) of a quiet node
			// must see that the stream is open.
			res.flushHeaders();
			// With backpressure: a follower that reads slower than flows come (the relay
			// on a busy node) costs a bounded queue and is told what it lost.
			const sink = new FollowSink(res, FOLLOW_QUEUE);
			sink.sendPast(past.map((f) => JSON.stringify(f)));
			const stop = opts.ring.follow((f) => {
				if (matchesFilter(f, filter)) sink.send(JSON.stringify(f));
			});
			req.raw.on('close', stop);
		},
	);
};
