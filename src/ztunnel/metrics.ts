// The ztunnel's Prometheus metrics, named and labelled like Istio's standard TCP
// metrics (istio_tcp_connections_opened_total, …_closed_total, istio_tcp_sent_bytes_total,
// istio_tcp_received_bytes_total) so existing Istio dashboards read them, plus Weir's
// own counters of refused connections and HBONE connections. A ConnectionObserver:
// counting happens when a connection opens and closes, never per chunk.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ConnectionInfo, ConnectionObserver, ConnectionResult, Peer } from './proxy/connections.js';

const LABELS = [
	'reporter',
	'source_workload',
	'source_workload_namespace',
	'source_principal',
	'source_app',
	'destination_workload',
	'destination_workload_namespace',
	'destination_principal',
	'destination_app',
	'connection_security_policy',
	'request_protocol',
	'response_flags',
] as const;

type Labels = Record<(typeof LABELS)[number], string>;

const UNKNOWN = 'unknown';

function side(prefix: 'source' | 'destination', p: Peer): Record<string, string> {
	return {
		[`${prefix}_workload`]: p.workload?.workload ?? UNKNOWN,
		[`${prefix}_workload_namespace`]: p.workload?.namespace ?? UNKNOWN,
		[`${prefix}_principal`]: p.identity ?? UNKNOWN,
		[`${prefix}_app`]: p.workload?.app ?? UNKNOWN,
	};
}

/** Istio's label set for a connection (reporter: who counts it). */
export function istioLabels(c: ConnectionInfo, responseFlags = '-'): Labels {
	return {
		reporter: c.direction === 'outbound' ? 'source' : 'destination',
		...side('source', c.source),
		...side('destination', c.destination),
		connection_security_policy: c.security === 'mutual_tls' ? 'mutual_tls' : 'none',
		request_protocol: 'tcp',
		response_flags: responseFlags,
	} as Labels;
}

export class ZtunnelMetrics implements ConnectionObserver {
	readonly registry = new Registry();
	private readonly opened_: Counter<(typeof LABELS)[number]>;
	private readonly closed_: Counter<(typeof LABELS)[number]>;
	private readonly sent: Counter<(typeof LABELS)[number]>;
	private readonly received: Counter<(typeof LABELS)[number]>;
	private readonly refusals: Counter<'direction' | 'code'>;
	readonly hboneConnections: Gauge;
	readonly activeConnections: Gauge<'direction'>;

	constructor(o: { defaultMetrics?: boolean } = {}) {
		const r = [this.registry];
		this.opened_ = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened', labelNames: LABELS, registers: r });
		this.closed_ = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed', labelNames: LABELS, registers: r });
		this.sent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'bytes sent by the source of TCP connections', labelNames: LABELS, registers: r });
		this.received = new Counter({
			name: 'istio_tcp_received_bytes_total',
			help: 'bytes received by the source of TCP connections',
			labelNames: LABELS,
			registers: r,
		});
		this.refusals = new Counter({
			name: 'weir_ztunnel_refused_connections_total',
			help: 'connections the ztunnel refused or could not establish, by direction and code (HTTP status or WEIR_ERR_*)',
			labelNames: ['direction', 'code'],
			registers: r,
		});
		this.hboneConnections = new Gauge({ name: 'weir_ztunnel_hbone_pool_connections', help: 'open outbound HBONE connections', registers: r });
		this.activeConnections = new Gauge({
			name: 'weir_ztunnel_active_connections',
			help: 'proxied connections open now',
			labelNames: ['direction'],
			registers: r,
		});
		if (o.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
	}

	opened(c: ConnectionInfo): void {
		this.opened_.inc(istioLabels(c));
		this.activeConnections.inc({ direction: c.direction });
	}

	closed(c: ConnectionInfo, r: ConnectionResult): void {
		const l = istioLabels(c);
		this.closed_.inc(l);
		this.sent.inc(l, r.sent);
		this.received.inc(l, r.received);
		this.activeConnections.dec({ direction: c.direction });
	}

	refused(c: ConnectionInfo, code: string): void {
		this.refusals.inc({ direction: c.direction, code });
	}
}
