// How the relay reaches a node agent's observer API. Inside the cluster: directly at
// the agent pod's IP (agents are host-network, so it is the node's IP) on the observer
// port. From outside (a relay run on a laptop, the tests): through the API server's pod
// proxy, authenticated with the kubeconfig, as `weir status` does.
import * as http from 'node:http';
import * as https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type * as k8s from '@kubernetes/client-node';

/** One node's agent, as discovery found it. */
export interface AgentTarget {
	node: string;
	/** the agent pod (namespace/name), when discovered through the API */
	pod?: { namespace: string; name: string };
	/** the agent's address (pod IP = node IP) */
	address?: string;
	/** a full base URL instead (a node given on the command line, tests) */
	url?: string;
}

export interface ObserverTransport {
	/** GET `path` (with its query) from the target's observer API; resolves once the headers arrive. */
	get(target: AgentTarget, path: string, o: { signal: AbortSignal; timeoutMs: number }): Promise<IncomingMessage>;
	/** where requests go, for status and messages */
	describe(target: AgentTarget): string;
}

/** GET `url`; resolves with the response once its headers arrive within `timeoutMs`. */
export function httpGet(url: URL, options: https.RequestOptions, o: { signal?: AbortSignal; timeoutMs: number }): Promise<IncomingMessage> {
	return new Promise((resolve, reject) => {
		const mod = url.protocol === 'https:' ? https : http;
		const req = mod.request(url, {
			...options,
			method: 'GET',
			...(o.signal ? { signal: o.signal } : {}),
			headers: { ...(options.headers ?? {}), accept: 'application/json' },
		});
		// The headers must come within the timeout: a stopped agent accepts the
		// connection in its kernel and then answers nothing.
		const timer = setTimeout(() => req.destroy(new Error(`no answer within ${o.timeoutMs} ms`)), o.timeoutMs);
		req.once('response', (res) => {
			clearTimeout(timer);
			resolve(res);
		});
		req.once('error', (err) => {
			clearTimeout(timer);
			reject(err);
		});
		req.end();
	});
}

/** Straight to http://<address>:<port> (or the target's URL). */
export class DirectTransport implements ObserverTransport {
	private readonly agent = new http.Agent({ keepAlive: true });

	constructor(private readonly port: number) {}

	base(t: AgentTarget): string {
		if (t.url) return t.url.replace(/\/$/, '');
		if (!t.address) throw new Error(`no address for the agent on ${t.node}`);
		return `http://${t.address}:${this.port}`;
	}

	describe(t: AgentTarget): string {
		return this.base(t);
	}

	get(t: AgentTarget, path: string, o: { signal: AbortSignal; timeoutMs: number }): Promise<IncomingMessage> {
		return httpGet(new URL(`${this.base(t)}${path}`), { agent: t.url?.startsWith('https:') ? undefined : this.agent }, o);
	}
}

/** Through the API server: /api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/<path>. */
export class PodProxyTransport implements ObserverTransport {
	constructor(
		private readonly kc: k8s.KubeConfig,
		private readonly port: number,
	) {}

	private server(): string {
		const c = this.kc.getCurrentCluster();
		if (!c) throw new Error('the kubeconfig has no current cluster');
		return c.server.replace(/\/$/, '');
	}

	describe(t: AgentTarget): string {
		return t.pod ? `${this.server()}/api/v1/namespaces/${t.pod.namespace}/pods/${t.pod.name}:${this.port}/proxy` : `(no agent pod on ${t.node})`;
	}

	async get(t: AgentTarget, path: string, o: { signal: AbortSignal; timeoutMs: number }): Promise<IncomingMessage> {
		if (!t.pod) throw new Error(`no agent pod on ${t.node}`);
		const url = new URL(`${this.describe(t)}${path}`);
		const opts: https.RequestOptions = {};
		await this.kc.applyToHTTPSOptions(opts);
		return httpGet(url, opts, o);
	}
}
