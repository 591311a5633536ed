// Where the CLI reads flows: by default the cluster-wide relay through the API
// server's service proxy, authenticated with the kubeconfig (as `hubble observe` goes
// through hubble-relay; nothing but kubectl access is needed), or any observer API
// given by URL: the relay through a port-forward, or one node agent.
import * as https from 'node:https';
import type { IncomingMessage } from 'node:http';
import * as k8s from '@kubernetes/client-node';
import { httpGet } from '../relay/transport.js';
import { RELAY_DEFAULTS } from '../shared/defaults.js';

export interface ObserverEndpoint {
	/** GET path (with query) on the observer API */
	get(path: string, o?: { signal?: AbortSignal; timeoutMs?: number }): Promise<IncomingMessage>;
	/** for messages: where requests go */
	readonly where: string;
	/** what to check when it cannot be reached */
	readonly hint: string;
}

export function directEndpoint(url: string): ObserverEndpoint {
	const base = url.replace(/\/$/, '');
	return {
		where: base,
		hint: 'is the agent or relay running? set --server or WEIR_OBSERVER',
		get: (path, o = {}) => httpGet(new URL(`${base}${path}`), {}, { ...o, timeoutMs: o.timeoutMs ?? 10_000 }),
	};
}

export function loadKubeConfig(path?: string): k8s.KubeConfig {
	const kc = new k8s.KubeConfig();
	if (path) kc.loadFromFile(path);
	else kc.loadFromDefault();
	return kc;
}

/** The relay Service's proxy path on the API server: /api/v1/namespaces/<ns>/services/<name>:<port>/proxy */
export function serviceProxyPath(namespace: string = RELAY_DEFAULTS.namespace): string {
	return `/api/v1/namespaces/${namespace}/services/${RELAY_DEFAULTS.service}:${RELAY_DEFAULTS.servicePort}/proxy`;
}

/** The relay through the API server's service proxy. */
export function kubeRelayEndpoint(kc: k8s.KubeConfig, namespace: string = RELAY_DEFAULTS.namespace): ObserverEndpoint {
	const cluster = kc.getCurrentCluster();
	if (!cluster) throw new Error('the kubeconfig has no current cluster: set --kubeconfig or KUBECONFIG, or --server');
	const base = `${cluster.server.replace(/\/$/, '')}${serviceProxyPath(namespace)}`;
	return {
		where: `the relay (service ${namespace}/${RELAY_DEFAULTS.service} through ${cluster.server})`,
		hint: `is weir-controller running? kubectl -n ${namespace} get deploy weir-controller; or read a node agent with --server`,
		async get(path, o = {}) {
			const opts: https.RequestOptions = {};
			await kc.applyToHTTPSOptions(opts);
			return httpGet(new URL(`${base}${path}`), opts, { ...o, timeoutMs: o.timeoutMs ?? 10_000 });
		},
	};
}

/** The whole body as text. */
export async function bodyText(res: IncomingMessage): Promise<string> {
	let s = '';
	for await (const c of res as AsyncIterable<Buffer>) s += c.toString();
	return s;
}
