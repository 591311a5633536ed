// The node's observer API (fastify plugin): recent flows with filters, and live follow
// as newline-delimited JSON.
//   GET /v1/flows?namespace=&pod=&verdict=&port=&protocol=&since=&limit=&follow=true
import { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { FlowFilter, FlowVerdict, matchesFilter } from './flow.js';
import { FlowRing } from './flow-ring.js';

export interface ObserveApiOptions {
	ring: FlowRing;
}

const VERDICTS = new Set<FlowVerdict>(['FORWARDED', 'DROPPED', 'AUDIT']);

interface FlowQuery {
	namespace?: string;
	pod?: string;
	verdict?: string;
	port?: string;
	protocol?: string;
	since?: string;
	limit?: string;
	follow?: string;
}

export class BadQueryError extends Error {
	readonly code = 'WEIR_ERR_BAD_QUERY';
	readonly statusCode = 400;
}

export function parseFilter(q: FlowQuery): { filter: FlowFilter; limit: number; follow: boolean } {
	const filter: FlowFilter = {};
	if (q.namespace) filter.namespace = q.namespace;
	if (q.pod) filter.pod = q.pod;
	if (q.protocol) filter.protocol = q.protocol;
	if (q.verdict) {
		const v = q.verdict.toUpperCase() as FlowVerdict;
		if (!VERDICTS.has(v)) throw new BadQueryError(`verdict must be one of ${[...VERDICTS].join(', ')}, not '${q.verdict}'`);
		filter.verdict = v;
	}
	if (q.port !== undefined) {
		const port = Number(q.port);
		if (!Number.isInteger(port) || port < 0 || port > 65535) throw new BadQueryError(`port must be 0-65535, not '${q.port}'`);
		filter.port = port;
	}
	if (q.since !== undefined) {
		const t = Date.parse(q.since);
		if (Number.isNaN(t)) throw new BadQueryError(`since must be an ISO time, not '${q.since}'`);
		filter.since = t;
	}
	let limit = 100;
	if (q.limit !== undefined) {
		limit = Number(q.limit);
		if (!Number.isInteger(limit) || limit < 0 || limit > 100000) throw new BadQueryError(`limit must be 0-100000, not '${q.limit}'`);
	}
	return { filter, limit, follow: q.follow === 'true' || q.follow === '1' };
}

export const observeApi: FastifyPluginAsync<ObserveApiOptions> = async (app: FastifyInstance, opts) => {
	app.get<{ Querystring: FlowQuery }>('/v1/flows', async (req, reply) => {
		const { filter, limit, follow } = parseFilter(req.query);
		const past = opts.ring.recent(filter, limit);
		if (!follow) return { flows: past };
		reply.hijack();
		const res = reply.raw;
		res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
		for (const f of past) res.write(`${JSON.stringify(f)}\n`);
		const stop = opts.ring.follow((f) => {
			if (matchesFilter(f, filter)) res.write(`${JSON.stringify(f)}\n`);
		});
		req.raw.on('close', stop);
	});
};
