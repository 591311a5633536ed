// In-memory stand-ins for the CA's ports and the certificate manager's clock.
import pino from 'pino';
import { WorkloadCa } from '../../src/ca/ca.js';
import type { CaCluster, PodSummary, TokenReviewStatus } from '../../src/ca/ports.js';
import type { Clock } from '../../src/identity/cert-manager.js';

export class FakeCaCluster implements CaCluster {
	readonly secrets = new Map<string, Record<string, string>>();
	readonly configMaps = new Map<string, Record<string, string>>();
	readonly tokens = new Map<string, TokenReviewStatus>();
	pods: PodSummary[] = [];
	reviews: { token: string; audiences: string[] }[] = [];
	failApi = false;

	async createSecretIfAbsent(ns: string, name: string, data: Record<string, string>): Promise<boolean> {
		await Promise.resolve();
		if (this.secrets.has(`${ns}/${name}`)) return false;
		this.secrets.set(`${ns}/${name}`, data);
		return true;
	}
	async readSecret(ns: string, name: string): Promise<Record<string, string> | undefined> {
		await Promise.resolve();
		return this.secrets.get(`${ns}/${name}`);
	}
	async publishConfigMap(ns: string, name: string, data: Record<string, string>): Promise<void> {
		await Promise.resolve();
		this.configMaps.set(`${ns}/${name}`, data);
	}
	async reviewToken(token: string, audiences: string[]): Promise<TokenReviewStatus> {
		if (this.failApi) throw new Error('connect ECONNREFUSED');
		this.reviews.push({ token, audiences });
		const s = this.tokens.get(token);
		if (!s) return { authenticated: false, error: 'invalid bearer token' };
		return { ...s, audiences: (s.audiences ?? []).filter((a) => audiences.includes(a)) };
	}
	async podsOnNode(ns: string, node: string): Promise<PodSummary[]> {
		await Promise.resolve();
		return this.pods.filter((p) => p.namespace === ns && p.nodeName === node);
	}
	async pod(ns: string, name: string): Promise<PodSummary | undefined> {
		await Promise.resolve();
		return this.pods.find((p) => p.namespace === ns && p.name === name);
	}

	/** A ztunnel pod's bound token (node name in the token unless `withNode` is false). */
	ztunnelToken(token: string, node: string, o: { sa?: string; ns?: string; withNode?: boolean; pod?: string; uid?: string } = {}): void {
		const pod = o.pod ?? `ztunnel-${node}`;
		const uid = o.uid ?? `uid-${pod}`;
		this.tokens.set(token, {
			authenticated: true,
			audiences: ['weir-ca'],
			user: {
				username: `system:serviceaccount:${o.ns ?? 'weir-system'}:${o.sa ?? 'weir-ztunnel'}`,
				extra: {
					'authentication.kubernetes.io/pod-name': [pod],
					'authentication.kubernetes.io/pod-uid': [uid],
					...(o.withNode === false ? {} : { 'authentication.kubernetes.io/node-name': [node] }),
				},
			},
		});
	}
}

/** Timers that fire only when the test advances time. */
export class FakeClock implements Clock {
	private t: number;
	private seq = 0;
	private readonly timers = new Map<number, { at: number; fn: () => void }>();
	constructor(start = Date.UTC(2026, 0, 1)) {
		this.t = start;
	}
	now(): number {
		return this.t;
	}
	setTimeout(fn: () => void, ms: number): unknown {
		const id = ++this.seq;
		this.timers.set(id, { at: this.t + ms, fn });
		return id;
	}
	clearTimeout(h: unknown): void {
		this.timers.delete(h as number);
	}
	/** Moves time forward by `ms`, firing due timers in order. */
	advance(ms: number): void {
		const end = this.t + ms;
		for (;;) {
			const due = [...this.timers.entries()].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
			if (!due) break;
			this.timers.delete(due[0]);
			this.t = Math.max(this.t, due[1].at);
			due[1].fn();
		}
		this.t = end;
	}
	pending(): number[] {
		return [...this.timers.values()].map((v) => v.at).sort((a, b) => a - b);
	}
}

/** A CA over a FakeCaCluster with Weir's defaults, its root made. */
export async function testCa(certTtlMs: number, now?: () => number): Promise<{ cluster: FakeCaCluster; ca: WorkloadCa }> {
	const cluster = new FakeCaCluster();
	const ca = new WorkloadCa({
		cluster,
		trustDomain: 'cluster.local',
		namespace: 'weir-system',
		ztunnelServiceAccount: 'weir-ztunnel',
		audience: 'weir-ca',
		certTtlMs,
		log: pino({ level: 'silent' }),
		...(now ? { now } : {}),
	});
	await ca.init();
	return { cluster, ca };
}
