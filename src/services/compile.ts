// ClusterIP Services as the socket load balancer sees them: a pure function of the
// Services and EndpointSlices in the watch cache. One entry per (ClusterIP, port,
// protocol) with its ready backends; nothing else (NodePort, LoadBalancer and
// externalIPs reached from outside the cluster stay kube-proxy's, see docs/services.md).
import type * as k8s from '@kubernetes/client-node';
import { isIpv4 } from '../shared/ipv4.js';
import type { Backend, Frontend, LbProtocol } from '../kernel/service-lb.js';
import { LB_MAX_BACKENDS } from '../kernel/layout.js';

export type { Backend, Frontend, LbProtocol };

/** What one Service port becomes in the load balancer's maps. */
export interface ServiceEntry {
	/** reverse-translation id, 1..65535, stable for the frontend while it exists */
	id: number;
	frontend: Frontend;
	/** ready backends, sorted (deterministic slots) */
	backends: Backend[];
	/** sessionAffinity ClientIP: seconds a client keeps its backend; 0 = none */
	affinitySec: number;
	/** the Service it came from, for flows and status */
	service: { namespace: string; name: string; port: string };
}

export interface ServiceProblem {
	service: string;
	message: string;
}

export interface CompiledServices {
	/** by frontend key (frontendKey) */
	entries: Map<string, ServiceEntry>;
	problems: ServiceProblem[];
}

/** The maps hold 16-bit ids; 0 means "none". */
export const MAX_SERVICE_ID = 0xffff;
/** Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds. */
export const DEFAULT_AFFINITY_SEC = 10_800;
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export function frontendKey(f: Frontend): string {
	return `${f.vip}:${f.port}/${f.protocol}`;
}

/**
 * Frontend → id. An id stays with its frontend until the frontend is gone. Freed ids
 * are reused only after every other one (a rotating cursor), so a flow read shortly
 * after a Service is deleted does not name its successor. A restarted agent seeds it
 * from the pinned maps, so ids survive the restart.
 */
export class ServiceIdAllocator {
	private readonly ids = new Map<string, number>();
	private readonly used = new Set<number>();
	private cursor = 0;

	seed(key: string, id: number): void {
		if (this.used.has(id) || this.ids.has(key)) return;
		this.ids.set(key, id);
		this.used.add(id);
	}

	idFor(key: string): number | undefined {
		let id = this.ids.get(key);
		if (id !== undefined) return id;
		for (let n = 0; n < MAX_SERVICE_ID; n++) {
			const i = ((this.cursor + n) % MAX_SERVICE_ID) + 1;
			if (!this.used.has(i)) {
				id = i;
				this.cursor = i % MAX_SERVICE_ID;
				break;
			}
		}
		if (id === undefined) return undefined;
		this.ids.set(key, id);
		this.used.add(id);
		return id;
	}

	/** Frees the ids of frontends not in `keep`. */
	retain(keep: ReadonlySet<string>): void {
		for (const [k, id] of this.ids) {
			if (keep.has(k)) continue;
			this.ids.delete(k);
			this.used.delete(id);
		}
	}
}

function sliceBackends(slice: k8s.V1EndpointSlice, portName: string, protocol: LbProtocol, localNode: string | undefined): Backend[] {
	if (slice.addressType !== 'IPv4') return [];
	const port = (slice.ports ?? []).find((p) => (p.name ?? '') === portName && (p.protocol ?? 'TCP') === protocol)?.port;
	if (port === undefined || port === null) return [];
	const out: Backend[] = [];
	for (const ep of slice.endpoints ?? []) {
		// The API: a nil `ready` is to be read as ready; terminating endpoints are not ready.
		if (ep.conditions?.ready === false) continue;
		if (localNode !== undefined && ep.nodeName !== localNode) continue;
		for (const ip of ep.addresses ?? []) if (isIpv4(ip)) out.push({ ip, port });
	}
	return out;
}

function byAddress(a: Backend, b: Backend): number {
	return a.ip === b.ip ? a.port - b.port : a.ip < b.ip ? -1 : 1;
}

export interface ServiceCompileInput {
	services: readonly k8s.V1Service[];
	slices: readonly k8s.V1EndpointSlice[];
	ids: ServiceIdAllocator;
	/** this node, for internalTrafficPolicy: Local */
	node: string;
}

export function compileServices(input: ServiceCompileInput): CompiledServices {
	const slicesBySvc = new Map<string, k8s.V1EndpointSlice[]>();
	for (const s of input.slices) {
		const svc = s.metadata?.labels?.[SERVICE_NAME_LABEL];
		if (!svc) continue;
		const key = `${s.metadata?.namespace ?? 'default'}/${svc}`;
		const list = slicesBySvc.get(key);
		if (list) list.push(s);
		else slicesBySvc.set(key, [s]);
	}
	const entries = new Map<string, ServiceEntry>();
	const problems: ServiceProblem[] = [];
	for (const svc of input.services) {
		const namespace = svc.metadata?.namespace ?? 'default';
		const name = svc.metadata?.name ?? '';
		const id = `${namespace}/${name}`;
		const spec = svc.spec;
		if (!spec || spec.type === 'ExternalName') continue;
		const vips = (spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : []).filter((ip) => ip !== 'None' && isIpv4(ip));
		if (vips.length === 0) continue; // headless, or IPv6 only
		const local = spec.internalTrafficPolicy === 'Local' ? input.node : undefined;
		const affinitySec = spec.sessionAffinity === 'ClientIP' ? (spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_SEC) : 0;
		for (const p of spec.ports ?? []) {
			const protocol = p.protocol ?? 'TCP';
			if (protocol !== 'TCP' && protocol !== 'UDP') {
				problems.push({ service: id, message: `port ${p.name ?? p.port}/${protocol}: only TCP and UDP are load-balanced by Weir; left to kube-proxy` });
				continue;
			}
			const seen = new Set<string>();
			const backends: Backend[] = [];
			for (const s of slicesBySvc.get(id) ?? []) {
				for (const b of sliceBackends(s, p.name ?? '', protocol, local)) {
					const k = `${b.ip}:${b.port}`;
					if (seen.has(k)) continue;
					seen.add(k);
					backends.push(b);
				}
			}
			backends.sort(byAddress);
			if (backends.length > LB_MAX_BACKENDS) {
				problems.push({
					service: id,
					message: `port ${p.name ?? p.port}: ${backends.length} ready backends, the load balancer takes the first ${LB_MAX_BACKENDS}`,
				});
				backends.length = LB_MAX_BACKENDS;
			}
			for (const vip of vips) {
				const frontend: Frontend = { vip, port: p.port, protocol };
				const key = frontendKey(frontend);
				if (entries.has(key)) {
					problems.push({ service: id, message: `${key} is claimed twice; the first claim is kept` });
					continue;
				}
				const sid = input.ids.idFor(key);
				if (sid === undefined) {
					problems.push({ service: id, message: `${key}: no free service id (${MAX_SERVICE_ID} frontends)` });
					continue;
				}
				entries.set(key, { id: sid, frontend, backends, affinitySec, service: { namespace, name, port: p.name ?? String(p.port) } });
			}
		}
	}
	input.ids.retain(new Set(entries.keys()));
	return { entries, problems };
}
