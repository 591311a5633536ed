// The ztunnel's Prometheus metrics, named and labelled like Istio's standard TCP
// metrics (istio_tcp_connections_opened_total, …_closed_total, istio_tcp_sent_bytes_total,
// istio_tcp_received_bytes_total) so existing Istio dashboards read them, plus Weir's
// own counters of refused connections, HBONE connections and the HBONE server's
// refusals of bad input (docs/ztunnel.md, "Bad input"). A ConnectionObserver:
// counting happens when a connection opens and closes, never per chunk.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ConnectionInfo, ConnectionObserver, ConnectionResult, Peer } from './proxy/connections.js';
import type { HandshakeRejection, InboundEvents, SessionTermination, StreamReset } from './proxy/inbound.js';

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

export class ZtunnelMetrics implements ConnectionObserver, InboundEvents {
	readonly registry = new Registry();
	private readonly opened_: Counter<(typeof LABELS)[number]>;
	private readonly closed_: Counter<(typeof LABELS)[number]>;
	private readonly sent: Counter<(typeof LABELS)[number]>;
	private readonly received: Counter<(typeof LABELS)[number]>;
	private readonly refusals: Counter<'direction' | 'code'>;
	private readonly rejectedHandshakes: Counter<'reason'>;
	private readonly streamResets: Counter<'reason'>;
	private readonly terminatedSessions: Counter<'reason'>;
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
		this.rejectedHandshakes = new Counter({
			name: 'weir_ztunnel_rejected_handshakes_total',
			help: 'connections to the HBONE port closed before HTTP/2, by reason (not_tls, tls_version, untrusted_certificate, expired_certificate, …)',
			labelNames: ['reason'],
			registers: r,
		});
		this.streamResets = new Counter({
			name: 'weir_ztunnel_hbone_stream_resets_total',
			help: 'inbound HBONE streams that ended unanswered: reset by the client (client_reset) or refused by the HTTP/2 layer (http2_refused)',
			labelNames: ['reason'],
			registers: r,
		});
		this.terminatedSessions = new Counter({
			name: 'weir_ztunnel_hbone_sessions_terminated_total',
			help: 'inbound HBONE sessions the server ended, by reason (rapid_reset, protocol_error, idle_timeout, drain_deadline)',
			labelNames: ['reason'],
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

	handshakeRejected(reason: HandshakeRejection): void {
		this.rejectedHandshakes.inc({ reason });
	}

	streamReset(reason: StreamReset, streams: number): void {
		this.streamResets.inc({ reason }, streams);
	}

	sessionTerminated(reason: SessionTermination): void {
		this.terminatedSessions.inc({ reason });
	}
}
