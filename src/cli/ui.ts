// `weir ui`: the web UI on this machine. The relay (weir-controller) serves the UI and
// its API inside the cluster; this command listens on 127.0.0.1 and forwards every
// GET to the relay Service through the API server's service proxy, authenticated with
// the kubeconfig — what `kubectl port-forward svc/weir-relay 4245` does, without
// kubectl. Only GET and HEAD are forwarded: the UI is read-only. With --server, it
// forwards to a relay URL instead (a port-forward, or a relay run by hand).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Command, InvalidArgumentError } from 'commander';
import { RELAY_DEFAULTS } from '../shared/defaults.js';
import { directEndpoint, kubeRelayEndpoint, loadKubeConfig, serviceProxyPath, type ObserverEndpoint } from './relay-client.js';

export const UI_LOCAL_PORT = 12000;

const PASSED_HEADERS = ['content-type', 'cache-control', 'content-security-policy', 'x-content-type-options', 'etag', 'last-modified'];

/** Serves `ep` on host:port; resolves with the URL once listening. */
export function serveUi(ep: ObserverEndpoint, host: string, port: number): Promise<{ url: string; close(): Promise<void> }> {
	const server = createServer((req: IncomingMessage, res: ServerResponse) => {
		if (req.method !== 'GET' && req.method !== 'HEAD') {
			res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('the Weir UI is read-only\n');
			return;
		}
		const ac = new AbortController();
		res.on('close', () => ac.abort());
		ep.get(req.url ?? '/', { signal: ac.signal, timeoutMs: 15_000 }).then(
			(up) => {
				const headers: Record<string, string> = {};
				for (const h of PASSED_HEADERS) {
					const v = up.headers[h];
					if (typeof v === 'string') headers[h] = v;
				}
				res.writeHead(up.statusCode ?? 502, headers);
				res.flushHeaders();
				up.pipe(res);
			},
			(err: Error) => {
				if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
				res.end(`cannot reach ${ep.where}: ${err.message}\n${ep.hint}\n`);
			},
		);
	});
	return new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(port, host, () => {
			const a = server.address();
			const p = typeof a === 'object' && a ? a.port : port;
			resolve({
				url: `http://${host.includes(':') ? `[${host}]` : host}:${p}/`,
				close: () =>
					new Promise((r) => {
						server.closeAllConnections();
						server.close(() => r());
					}),
			});
		});
	});
}

interface UiOpts {
	kubeconfig?: string;
	weirNamespace: string;
	server?: string;
	address: string;
	port: number;
	printUrl?: boolean;
}

function portArg(v: string): number {
	const n = Number(v);
	if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is 0-65535');
	return n;
}

export function uiCommand(out: (s: string) => void): Command {
	return new Command('ui')
		.description('open the web UI: service map and flows, served by the relay, forwarded to 127.0.0.1')
		.option('--kubeconfig <path>', 'kubeconfig (default: $KUBECONFIG or ~/.kube/config)')
		.option('--weir-namespace <ns>', "Weir's namespace (the relay Service)", RELAY_DEFAULTS.namespace)
		.option('--server <url>', 'a relay URL to forward to instead of the API server (e.g. a port-forward)')
		.option('--address <addr>', 'local address to listen on', '127.0.0.1')
		.option('--port <port>', 'local port (0: any free one)', portArg, UI_LOCAL_PORT)
		.option('--print-url', 'print the API server URL of the UI (for kubectl proxy) and exit')
		.action(async (o: UiOpts) => {
			if (o.printUrl) {
				out(`kubectl proxy, then: http://127.0.0.1:8001${serviceProxyPath(o.weirNamespace)}/`);
				out(
					`or: kubectl -n ${o.weirNamespace} port-forward svc/${RELAY_DEFAULTS.service} ${RELAY_DEFAULTS.port}, then http://127.0.0.1:${RELAY_DEFAULTS.port}/`,
				);
				return;
			}
			const ep = o.server ? directEndpoint(o.server) : kubeRelayEndpoint(loadKubeConfig(o.kubeconfig), o.weirNamespace);
			let ui;
			try {
				ui = await serveUi(ep, o.address, o.port);
			} catch (err) {
				if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || o.port === 0) throw err;
				out(`port ${o.port} is taken; listening on a free one`);
				ui = await serveUi(ep, o.address, 0);
			}
			out(`Weir UI: ${ui.url}  (from ${ep.where}; Ctrl-C to stop)`);
			await new Promise<void>((resolve) => {
				const stop = (): void => void ui.close().then(resolve);
				process.once('SIGINT', stop);
				process.once('SIGTERM', stop);
			});
		});
}
