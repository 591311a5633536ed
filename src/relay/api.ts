// The relay's HTTP API (a fastify plugin). Read-only: every route is a GET and none
// changes cluster state.
//   GET /v1/flows         cluster-wide flows (query: src/relay/query.ts); follow=true streams NDJSON
//   GET /v1/nodes         every node and whether its flows are being read
//   GET /v1/namespaces    namespaces of the cluster and of the flows seen
//   GET /v1/service-map   edges per source workload -> destination workload/port, counts by verdict
//   GET /v1/relay         the relay's own counters and bounds
//   GET /healthz, /readyz
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { FollowSink } from '../shared/follow-sink.js';
import type { FlowsResponse, HeartbeatEvent, NamespacesResponse, NodeEvent, NodesResponse } from '../shared/wire.js';
import { badQuery, BadQueryError, FLOW_QUERY_SCHEMA, preValidate, toRequest, type FlowQuery } from './query.js';
import type { Relay } from './relay.js';

export interface RelayApiOptions {
	relay: Relay;
	followQueue: number;
	/** a heartbeat line on quiet follow streams (ms), so proxies keep them open */
	heartbeatMs?: number;
	version: string;
}

const MAP_QUERY = {
	type: 'object',
	properties: {
		namespace: { type: 'array', items: { type: 'string' } },
		since: { type: 'string', format: 'date-time' },
	},
} as const;

export const relayApi: FastifyPluginAsync<RelayApiOptions> = async (app: FastifyInstance, opts) => {
	const { relay } = opts;
	const live = new Set<ServerResponse>();
	app.addHook('onClose', async () => {
		for (const res of live) res.destroy();
	});
	app.get<{ Querystring: FlowQuery }>(
		'/v1/flows',
		{
			schema: { querystring: FLOW_QUERY_SCHEMA },
			schemaErrorFormatter: badQuery,
			preValidation: async (req) => preValidate(req.query as Record<string, unknown>),
		},
		async (req, reply) => {
			const r = toRequest(req.query);
			const past = relay.query(r.filter, { ...(r.first !== undefined ? { first: r.first } : {}), ...(r.last !== undefined ? { last: r.last } : {}) });
			if (!r.follow) return { flows: past.map((p) => p.flow), nodes: relay.nodes().filter((n) => n.state !== 'connected') } satisfies FlowsResponse;
			// The stream is written by hand: lines go out as flows arrive, with backpressure.
			const res = reply.raw;
			const sink = new FollowSink(res, opts.followQueue);
			const stop = relay.follow(r.filter, sink, past);
			reply.hijack();
			res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
			res.flushHeaders();
			for (const n of relay.nodes())
				if (n.state !== 'connected')
					sink.send(JSON.stringify({ event: 'node', node: n.name, state: n.state, error: n.error, time: n.since } satisfies NodeEvent));
			const beat = setInterval(
				() => sink.send(JSON.stringify({ event: 'heartbeat', time: new Date().toISOString() } satisfies HeartbeatEvent)),
				opts.heartbeatMs ?? 15_000,
			);
			live.add(res);
			const end = (): void => {
				clearInterval(beat);
				stop();
				live.delete(res);
			};
			req.raw.on('close', end);
			res.on('close', end);
		},
	);

	app.get('/v1/nodes', async () => ({ nodes: relay.nodes() }) satisfies NodesResponse);
	app.get('/v1/namespaces', async () => ({ namespaces: relay.namespaces() }) satisfies NamespacesResponse);

	app.get<{ Querystring: { namespace?: string[]; since?: string } }>(
		'/v1/service-map',
		{
			schema: { querystring: MAP_QUERY },
			schemaErrorFormatter: (errors) => {
				const name = (errors[0]?.instancePath ?? '').split('/')[1] ?? '';
				return new BadQueryError(
					name === 'since' ? 'since must be an RFC 3339 date-time with a time zone, e.g. 2026-01-01T12:00:00Z' : `bad query: ${errors[0]?.message}`,
				);
			},
			preValidation: async (req) => preValidate(req.query as Record<string, unknown>, MAP_QUERY.properties),
		},
		async (req) => {
			const q = req.query;
			return relay.serviceMap({ ...(q.namespace ? { namespaces: q.namespace } : {}), ...(q.since ? { since: Date.parse(q.since) } : {}) });
		},
	);

	app.get('/v1/relay', async () => ({ version: opts.version, ...relay.stats(), memory: process.memoryUsage() }));
	app.get('/healthz', async () => ({ ok: true }));
	// Ready once it serves; unavailable nodes are reported, not a reason to stop serving the rest.
	app.get('/readyz', async () => ({ ready: true, nodes: relay.nodes().map((n) => ({ name: n.name, state: n.state })) }));
};
