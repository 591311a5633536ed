// The socket load balancer in the agent: the kernel's maps and cgroup links
// (src/kernel/service-lb.ts), the service controller that fills them from the
// Services/EndpointSlices watches (src/services/), and the lookups flows use to name
// the Service a local client addressed, and the client and Service of a refusal.
import type { Backend, Frontend, LbProtocol } from '../services/compile.js';
import type { ServiceController, ServiceMaps } from '../services/controller.js';
import type { FlowServiceRef } from '../observe/flow.js';
import type { ServiceLookups } from '../observe/flow-index.js';
import type { LocalEndpoint } from '../shared/endpoint.js';

/** What the agent needs of the kernel side beyond the controller's maps. */
export interface SocketLbHandle extends ServiceMaps {
	addressedService(netnsCookie: bigint, backend: Backend, protocol: LbProtocol): number | undefined;
}

export interface ServiceLookupOptions {
	/** a local pod's security identity by address (the endpoints map), for the source of a refusal */
	identityOf?: (ip: string) => number | undefined;
	/** this node's network namespace (the agent runs in it: host network) */
	hostNetns?: string;
}

/** Cookies of netns paths read so far (a netns keeps its cookie for life; null: it could not be opened). */
const MAX_COOKIES = 4096;

function serviceRef(svc: { namespace: string; name: string; port: string; frontend: Frontend } | undefined): FlowServiceRef | undefined {
	return svc ? { namespace: svc.namespace, name: svc.name, port: svc.port, vip: svc.frontend.vip, vipPort: svc.frontend.port } : undefined;
}

/**
 * Names the Service behind a flow: the client's network namespace (a local pod's,
 * from the CNI's endpoint record) and the backend it reached select the translation
 * the load balancer recorded at connect()/sendmsg(). For a refused connect, the
 * netns cookie the program reported is matched against the local pods' (and this
 * node's), and the frontend against the Services controller's table.
 */
export function serviceLookups(
	lb: SocketLbHandle,
	services: Pick<ServiceController, 'serviceById' | 'serviceByFrontend'>,
	endpoints: () => readonly LocalEndpoint[],
	cookieOf: (netnsPath: string) => bigint,
	opts: ServiceLookupOptions = {},
): ServiceLookups {
	const cookies = new Map<string, bigint | null>();
	const cookieFor = (path: string): bigint | undefined => {
		let cookie = cookies.get(path);
		if (cookie === undefined) {
			try {
				cookie = cookieOf(path);
			} catch {
				cookie = null; // the netns is gone: nothing to name
			}
			if (cookies.size >= MAX_COOKIES) cookies.clear();
			cookies.set(path, cookie);
		}
		return cookie ?? undefined;
	};
	return {
		addressedService(client, backend, port, protocol): FlowServiceRef | undefined {
			const ep = endpoints().find((e) => e.ip === client);
			const cookie = ep?.netns ? cookieFor(ep.netns) : undefined;
			if (cookie === undefined) return undefined;
			const id = lb.addressedService(cookie, { ip: backend, port }, protocol);
			return id === undefined ? undefined : serviceRef(services.serviceById(id));
		},
		clientByNetns(netnsCookie) {
			for (const ep of endpoints()) {
				if (ep.netns && cookieFor(ep.netns) === netnsCookie) return { ip: ep.ip, identity: opts.identityOf?.(ep.ip) ?? 0 };
			}
			return cookieFor(opts.hostNetns ?? '/proc/self/ns/net') === netnsCookie ? 'host' : undefined;
		},
		serviceByFrontend(vip, port, protocol) {
			return serviceRef(services.serviceByFrontend({ vip, port, protocol }));
		},
	};
}
