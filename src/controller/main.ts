#!/usr/bin/env node
// weir-controller: the cluster-wide flow relay, the web UI, the workload CA and Istio's
// security CRDs where absent (a Deployment in weir-system, deploy/base/controller.yaml,
// ca.yaml and crds.yaml).
// src/controller/app.ts wires it.
import { Command, InvalidArgumentError, Option } from 'commander';
import pino from 'pino';
import { join } from 'node:path';
import { RELAY_DEFAULTS as RELAY_BOUNDS } from '../relay/relay.js';
import { DEFAULTS, RELAY_DEFAULTS } from '../shared/defaults.js';
import { checkedArg } from '../shared/cli.js';
import { repoRoot } from '../shared/package.js';
import { CA_DEFAULTS } from '../ca/ca.js';
import { checkTrustDomain, DEFAULT_TRUST_DOMAIN, SpiffeIdError } from '../identity/spiffe.js';
import { buildController, type ControllerConfig } from './app.js';
import { ISTIO_CRDS_FILE } from './crds.js';

function int(min: number, max: number) {
	return (v: string): number => {
		const n = Number(v);
		if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`a whole number from ${min} to ${max}`);
		return n;
	};
}

function node(v: string, prev: Map<string, string>): Map<string, string> {
	const eq = v.indexOf('=');
	if (eq <= 0 || !/^https?:\/\//.test(v.slice(eq + 1))) throw new InvalidArgumentError('NAME=URL, e.g. n1=http://10.0.0.1:9962');
	return new Map(prev).set(v.slice(0, eq), v.slice(eq + 1));
}

interface Opts {
	host: string;
	port: number;
	namespace: string;
	node: Map<string, string>;
	kubeconfig?: string;
	via?: 'direct' | 'pod-proxy';
	agentPort: number;
	uiDir: string;
	flowBuffer: number;
	maxFollowers: number;
	followQueue: number;
	mergeWindowMs: number;
	mergeBuffer: number;
	mapEdges: number;
	ca: boolean;
	istioCrds: boolean;
	caPort: number;
	trustDomain: string;
	certTtlSeconds: number;
	ztunnelServiceAccount: string;
	caAudience: string;
	logLevel: string;
}

const trustDomain = checkedArg(checkTrustDomain, (err) => err instanceof SpiffeIdError);

const program = new Command('weir-controller')
	.description('the cluster-wide flow relay (every node agent’s flows, merged), the web UI and the workload CA')
	.option('--host <addr>', 'listen address', '0.0.0.0')
	.option('--port <port>', 'relay API and web UI port', int(0, 65535), RELAY_DEFAULTS.port)
	.option('--namespace <ns>', "Weir's namespace (where the weir-agent pods run)", RELAY_DEFAULTS.namespace)
	.option('--node <name=url>', 'read this node agent directly instead of discovering agents (repeatable)', node, new Map<string, string>())
	.option('--kubeconfig <path>', 'kubeconfig (default: in-cluster, $KUBECONFIG or ~/.kube/config)')
	.addOption(
		new Option('--via <how>', 'reach agents at their pod IP (inside the cluster) or through the API server pod proxy (outside)').choices([
			'direct',
			'pod-proxy',
		]),
	)
	.option('--agent-port <port>', "the agents' observer API port", int(1, 65535), DEFAULTS.observerPort)
	.option('--ui-dir <dir>', 'the built web UI', join(repoRoot, 'ui', 'dist'))
	.option('--flow-buffer <n>', 'cluster-wide flows kept for queries', int(1, 1_000_000), RELAY_BOUNDS.historySize)
	.option('--max-followers <n>', 'live streams served at once', int(1, 10_000), RELAY_BOUNDS.maxFollowers)
	.option('--follow-queue <n>', 'lines held per live stream while its client is slow', int(1, 1_000_000), RELAY_BOUNDS.followQueue)
	.option('--merge-window-ms <ms>', 'how long a flow waits for earlier flows of other nodes', int(0, 60_000), RELAY_BOUNDS.merge.windowMs)
	.option('--merge-buffer <n>', 'flows held at most while merging', int(1, 1_000_000), RELAY_BOUNDS.merge.capacity)
	.option('--map-edges <n>', 'service map edges kept', int(1, 1_000_000), RELAY_BOUNDS.mapEdges)
	.option('--no-ca', 'do not run the workload CA (it runs whenever the controller talks to the API server)')
	.option('--no-istio-crds', "do not create Istio's AuthorizationPolicy and PeerAuthentication CRDs where the cluster lacks them")
	.option('--ca-port <port>', "the workload CA's HTTPS port (0: any)", int(0, 65535), CA_DEFAULTS.port)
	.option('--trust-domain <td>', 'the SPIFFE trust domain of workload identities', trustDomain, DEFAULT_TRUST_DOMAIN)
	.option('--cert-ttl-seconds <s>', 'lifetime of workload certificates', int(1, 366 * 24 * 3600), CA_DEFAULTS.certTtlMs / 1000)
	.option('--ztunnel-service-account <name>', 'the only ServiceAccount (in --namespace) the CA signs for: the node ztunnel', CA_DEFAULTS.ztunnelServiceAccount)
	.option('--ca-audience <aud>', 'the audience the ztunnel’s projected token must be for', CA_DEFAULTS.audience)
	.option('--log-level <level>', 'pino log level', 'info')
	.action(async (o: Opts) => {
		// Each part logs with its own component (children of a root without one).
		const root = pino({ level: o.logLevel, base: {} });
		const log = root.child({ component: 'controller' });
		const cfg: ControllerConfig = {
			host: o.host,
			port: o.port,
			namespace: o.namespace,
			nodes: o.node,
			via: o.via ?? (process.env['KUBERNETES_SERVICE_HOST'] ? 'direct' : 'pod-proxy'),
			agentPort: o.agentPort,
			uiDir: o.uiDir,
			historySize: o.flowBuffer,
			maxFollowers: o.maxFollowers,
			followQueue: o.followQueue,
			mergeWindowMs: o.mergeWindowMs,
			mergeCapacity: o.mergeBuffer,
			mapEdges: o.mapEdges,
			...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
			...(o.istioCrds && o.node.size === 0 ? { istioCrdsFile: ISTIO_CRDS_FILE } : {}),
			...(o.ca && o.node.size === 0
				? {
						ca: {
							host: o.host,
							port: o.caPort,
							trustDomain: o.trustDomain,
							certTtlMs: o.certTtlSeconds * 1000,
							ztunnelServiceAccount: o.ztunnelServiceAccount,
							audience: o.caAudience,
						},
					}
				: {}),
		};
		const c = await buildController(cfg, root);
		const addr = await c.start();
		// The test harness and `weir ui` read this line to find the port.
		process.stdout.write(`weir-controller listening on ${addr}\n`);
		void c.caListening.then((caAddr) => process.stdout.write(`weir-controller CA listening on ${caAddr}\n`));
		const shutdown = (sig: string): void => {
			log.info({ sig }, 'stopping');
			c.stop().then(
				() => process.exit(0),
				() => process.exit(1),
			);
		};
		process.on('SIGTERM', () => shutdown('SIGTERM'));
		process.on('SIGINT', () => shutdown('SIGINT'));
	});

program.parseAsync(process.argv).catch((err: Error) => {
	process.stderr.write(`weir-controller: ${err.message}\n`);
	process.exit(1);
});
