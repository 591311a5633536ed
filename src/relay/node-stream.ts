// One node's flows, followed: GET /v1/flows?follow=true on the node's observer API,
// NDJSON parsed line by line and handed on. When the stream ends, fails, or the node
// stops answering its health check, the node is reported unavailable and the stream is
// re-opened with backoff, from the time of the last flow received (flows at that very
// millisecond that were seen already are skipped), so a node that returns rejoins with
// what it recorded meanwhile, as far as its own ring still holds it.
import type { IncomingMessage } from 'node:http';
import type { Flow, NodeState, NodeStatusView } from '../shared/wire.js';
import type { AgentTarget, ObserverTransport } from './transport.js';

export interface NodeStreamOptions {
	transport: ObserverTransport;
	onFlow: (f: Flow) => void;
	onState: (s: NodeStatusView) => void;
	/** flows asked for when first connecting (the node's recent history) */
	backfill: number;
	healthIntervalMs: number;
	/** headers and health answers must come within this */
	timeoutMs: number;
	backoff: { initialMs: number; maxMs: number };
	now: () => number;
}

export const NODE_STREAM_DEFAULTS = { backfill: 2000, healthIntervalMs: 2000, timeoutMs: 3000, backoff: { initialMs: 250, maxMs: 5000 } };

export class NodeStream {
	private abort: AbortController | undefined;
	private stopped = false;
	private retry: NodeJS.Timeout | undefined;
	private health: NodeJS.Timeout | undefined;
	private attempt = 0;
	private lastT: number | undefined;
	private atLastT = new Set<string>();
	private lastData = 0;
	private readonly view: NodeStatusView;

	constructor(
		private target: AgentTarget,
		private readonly o: NodeStreamOptions,
	) {
		this.view = { name: target.node, state: 'connecting', since: new Date(o.now()).toISOString(), flows: 0, reconnects: 0 };
		this.describe();
	}

	status(): NodeStatusView {
		return { ...this.view };
	}

	/** A new address or pod for the same node (agent restarted): reconnects there. */
	retarget(t: AgentTarget): void {
		const same = t.address === this.target.address && t.url === this.target.url && t.pod?.name === this.target.pod?.name;
		this.target = t;
		this.describe();
		if (!same && !this.stopped) this.reconnect('the agent pod changed');
	}

	private describe(): void {
		try {
			this.view.endpoint = this.o.transport.describe(this.target);
		} catch {
			delete this.view.endpoint;
		}
		if (this.target.pod) this.view.pod = `${this.target.pod.namespace}/${this.target.pod.name}`;
		else delete this.view.pod;
	}

	start(): void {
		this.stopped = false;
		this.connect();
		this.health = setInterval(() => void this.checkHealth(), this.o.healthIntervalMs);
		this.health.unref();
	}

	stop(): void {
		this.stopped = true;
		clearTimeout(this.retry);
		clearInterval(this.health);
		this.abort?.abort();
	}

	private setState(state: NodeState, error?: string): void {
		const changed = state !== this.view.state || error !== this.view.error;
		if (state !== this.view.state) this.view.since = new Date(this.o.now()).toISOString();
		this.view.state = state;
		if (error) this.view.error = error;
		else delete this.view.error;
		if (changed) this.o.onState(this.status());
	}

	private path(): string {
		const q = new URLSearchParams({ follow: 'true' });
		if (this.lastT === undefined) q.set('limit', String(this.o.backfill));
		else {
			q.set('since', new Date(this.lastT).toISOString());
			q.set('limit', '100000');
		}
		return `/v1/flows?${q}`;
	}

	private connect(): void {
		if (this.stopped) return;
		const ac = new AbortController();
		this.abort = ac;
		if (this.view.state !== 'unavailable') this.setState('connecting');
		this.o.transport.get(this.target, this.path(), { signal: ac.signal, timeoutMs: this.o.timeoutMs }).then(
			(res) => this.read(res, ac),
			(err: Error) => this.failed(ac, `cannot open the flow stream: ${err.message}`),
		);
	}

	private read(res: IncomingMessage, ac: AbortController): void {
		if (ac !== this.abort) {
			res.destroy();
			return;
		}
		if (res.statusCode !== 200) {
			let body = '';
			res.setEncoding('utf8');
			res.on('data', (d: string) => (body += d.slice(0, 300)));
			res.on('end', () => this.failed(ac, `the observer answered ${res.statusCode}: ${body.trim().slice(0, 200)}`));
			res.on('error', () => this.failed(ac, `the observer answered ${res.statusCode}`));
			return;
		}
		this.attempt = 0;
		this.lastData = this.o.now();
		this.setState('connected');
		let buf = '';
		res.setEncoding('utf8');
		res.on('data', (chunk: string) => {
			this.lastData = this.o.now();
			buf += chunk;
			let nl: number;
			while ((nl = buf.indexOf('\n')) >= 0) {
				const line = buf.slice(0, nl);
				buf = buf.slice(nl + 1);
				if (line) this.line(line);
			}
		});
		res.on('end', () => this.failed(ac, 'the observer closed the flow stream'));
		res.on('error', (err) => this.failed(ac, `the flow stream broke: ${err.message}`));
		res.on('close', () => this.failed(ac, 'the flow stream closed'));
	}

	private line(line: string): void {
		let f: Flow;
		try {
			f = JSON.parse(line) as Flow;
		} catch {
			return; // a torn line from a dying agent; the next connection resumes from the last good flow
		}
		if (typeof f !== 'object' || f === null) return;
		const ev = f as unknown as { event?: unknown; lost?: unknown };
		if (ev.event === 'lost') this.view.lost = (this.view.lost ?? 0) + (Number(ev.lost) || 0);
		if (ev.event !== undefined || typeof f.time !== 'string') return;
		const t = Date.parse(f.time);
		if (this.lastT !== undefined) {
			if (t < this.lastT) return;
			if (t === this.lastT) {
				if (this.atLastT.has(line)) return;
				this.atLastT.add(line);
			} else {
				this.lastT = t;
				this.atLastT = new Set([line]);
			}
		} else {
			this.lastT = t;
			this.atLastT = new Set([line]);
		}
		this.view.flows++;
		this.view.lastFlowTime = f.time;
		if (!f.node) f.node = this.target.node;
		this.o.onFlow(f);
	}

	private failed(ac: AbortController, why: string): void {
		if (ac !== this.abort || this.stopped) return;
		this.abort = undefined;
		ac.abort();
		this.setState('unavailable', why);
		const d = Math.min(this.o.backoff.maxMs, this.o.backoff.initialMs * 2 ** this.attempt++);
		clearTimeout(this.retry);
		this.retry = setTimeout(() => {
			this.view.reconnects++;
			this.connect();
		}, d);
		this.retry.unref();
	}

	private reconnect(why: string): void {
		if (this.abort) this.failed(this.abort, why);
	}

	/** A quiet stream may be a quiet node or a stopped one: ask its /healthz. */
	private async checkHealth(): Promise<void> {
		if (this.stopped || this.view.state !== 'connected') return;
		if (this.o.now() - this.lastData < this.o.healthIntervalMs) return;
		const ac = new AbortController();
		const current = this.abort;
		try {
			const res = await this.o.transport.get(this.target, '/healthz', { signal: ac.signal, timeoutMs: this.o.timeoutMs });
			res.resume();
			if (res.statusCode !== 200) throw new Error(`/healthz answered ${res.statusCode}`);
			this.lastData = this.o.now();
		} catch (err) {
			if (current && current === this.abort) this.failed(current, `the agent stopped answering: ${(err as Error).message}`);
		} finally {
			ac.abort();
		}
	}
}
