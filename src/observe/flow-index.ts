// The lookups that turn a datapath event into a flow: which pod holds an address,
// which rule a rule id is, which policies isolate an endpoint. Rebuilt after every
// policy run from the same snapshot the verdicts came from, read by the enricher.
import type * as k8s from '@kubernetes/client-node';
import { isTerminated, podIps, workloadOf } from '../cluster/objects.js';
import { monoToWallClock } from './clock.js';
import type { FlowContext, FlowServiceRef } from './flow.js';

/** What the policy layer's last applied state answers about verdicts. */
export interface VerdictLookups {
	rule(ruleId: number): { namespace: string; name: string; direction: string; index: number } | undefined;
	/** policies isolating an endpoint in a direction ('namespace/name') */
	isolatedBy(epId: number, direction: 'ingress' | 'egress'): string[];
	/** a non-pod identity's description (host, world, cidr:<prefix>, remote-node) */
	reservedName(identity: number): string | undefined;
	/** whether the local pod at this address is meshed */
	meshed?(ip: string): boolean;
	/** a pod address's security identity */
	identityOf?(ip: string): number | undefined;
	/** the PeerAuthentication that makes a local endpoint's port STRICT */
	mtlsStrictBy?(epId: number, port: number): string | undefined;
}

type PodRef = { namespace: string; name: string; workload: string; labels: Record<string, string> };

/** What the service load balancer answers about a connection a local client made, or refused. */
export interface ServiceLookups {
	addressedService(client: string, backend: string, port: number, protocol: 'TCP' | 'UDP'): FlowServiceRef | undefined;
	/** the local client behind a network namespace cookie: a pod, this node ('host'), or unknown */
	clientByNetns(netnsCookie: bigint): { ip: string; identity: number } | 'host' | undefined;
	serviceByFrontend(vip: string, port: number, protocol: 'TCP' | 'UDP'): FlowServiceRef | undefined;
}

const NO_VERDICTS: VerdictLookups = { rule: () => undefined, isolatedBy: () => [], reservedName: () => undefined };

export class FlowIndex {
	private podsByIp = new Map<string, PodRef>();
	private verdicts: VerdictLookups = NO_VERDICTS;

	constructor(
		readonly node: string,
		private readonly wallClockMs: (monoNs: bigint) => number = monoToWallClock(),
		private readonly services?: ServiceLookups,
	) {}

	/** Re-indexes: every pod with an address (host-network pods are the host's), and the verdict lookups. */
	update(pods: readonly k8s.V1Pod[], verdicts: VerdictLookups): void {
		const byIp = new Map<string, PodRef>();
		for (const p of pods) {
			if (isTerminated(p) || p.spec?.hostNetwork) continue;
			const ref: PodRef = {
				namespace: p.metadata?.namespace ?? 'default',
				name: p.metadata?.name ?? '',
				workload: workloadOf(p),
				labels: { ...(p.metadata?.labels ?? {}) },
			};
			for (const ip of podIps(p)) byIp.set(ip, ref);
		}
		this.podsByIp = byIp;
		this.verdicts = verdicts;
	}

	/** The enricher's view; always reads the latest update. */
	context(): FlowContext {
		return {
			node: this.node,
			podByIp: (ip) => this.podsByIp.get(ip),
			reservedName: (id) => this.verdicts.reservedName(id),
			rule: (id) => this.verdicts.rule(id),
			isolatedBy: (epId, dir) => this.verdicts.isolatedBy(epId, dir),
			meshed: (ip) => this.verdicts.meshed?.(ip) ?? false,
			identityOf: (ip) => this.verdicts.identityOf?.(ip),
			mtlsStrictBy: (epId, port) => this.verdicts.mtlsStrictBy?.(epId, port),
			wallClockMs: this.wallClockMs,
			...(this.services
				? {
						addressedService: (c, b, p, proto) => this.services!.addressedService(c, b, p, proto),
						clientByNetns: (cookie) => this.services!.clientByNetns(cookie),
						serviceByFrontend: (vip, port, proto) => this.services!.serviceByFrontend(vip, port, proto),
					}
				: {}),
		};
	}
}
