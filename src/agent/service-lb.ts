// The socket load balancer in the agent: the kernel's maps and cgroup links
// (src/kernel/service-lb.ts), the service controller that fills them from the
// Services/EndpointSlices watches (src/services/), and the lookup flows use to name
// the Service a local client addressed.
import type { Backend, LbProtocol } from '../services/compile.js';
import type { ServiceController, ServiceMaps } from '../services/controller.js';
import type { FlowServiceRef } from '../observe/flow.js';
import type { ServiceLookups } from '../observe/flow-index.js';
import type { LocalEndpoint } from '../shared/endpoint.js';

/** What the agent needs of the kernel side beyond the controller's maps. */
export interface SocketLbHandle extends ServiceMaps {
	addressedService(netnsCookie: bigint, backend: Backend, protocol: LbProtocol): number | undefined;
}

/**
 * Names the Service behind a flow: the client's network namespace (a local pod's,
 * from the CNI's endpoint record) and the backend it reached select the translation
 * the load balancer recorded at connect()/sendmsg().
 */
export function serviceLookups(
	lb: SocketLbHandle,
	services: Pick<ServiceController, 'serviceById'>,
	endpoints: () => readonly LocalEndpoint[],
	cookieOf: (netnsPath: string) => bigint,
): ServiceLookups {
	const cookies = new Map<string, bigint>(); // netns path -> cookie (a pod's netns keeps its cookie for life)
	return {
		addressedService(client, backend, port, protocol): FlowServiceRef | undefined {
			const ep = endpoints().find((e) => e.ip === client);
			if (!ep?.netns) return undefined;
			let cookie = cookies.get(ep.netns);
			if (cookie === undefined) {
				try {
					cookie = cookieOf(ep.netns);
				} catch {
					return undefined; // the pod's netns is gone: nothing to name
				}
				if (cookies.size > 4096) cookies.clear();
				cookies.set(ep.netns, cookie);
			}
			const id = lb.addressedService(cookie, { ip: backend, port }, protocol);
			const svc = id === undefined ? undefined : services.serviceById(id);
			return svc ? { namespace: svc.namespace, name: svc.name, port: svc.port, vip: svc.frontend.vip, vipPort: svc.frontend.port } : undefined;
		},
	};
}
