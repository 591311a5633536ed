#!/usr/bin/env node
// weir-ztunnel: the node proxy (a DaemonSet in weir-system, deploy/base/ztunnel.yaml).
// src/ztunnel/app.ts builds it.
import { Command, InvalidArgumentError, Option } from 'commander';
import pino from 'pino';
import { checkTrustDomain, SpiffeIdError } from '../identity/spiffe.js';
import { checkedArg, stopOnSignals } from '../shared/cli.js';
import { DEFAULT_ZTUNNEL_CONFIG, Ztunnel, type ZtunnelConfig } from './app.js';
import { DEFAULT_DRAIN_MS } from './drain.js';

function port(v: string): number {
	const n = Number(v);
	if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError('a port from 1 to 65535');
	return n;
}

const trustDomain = checkedArg(checkTrustDomain, (err) => err instanceof SpiffeIdError);

function seconds(v: string): number {
	const n = Number(v);
	if (!Number.isInteger(n) || n < 0 || n > 3600) throw new InvalidArgumentError('a whole number of seconds from 0 to 3600');
	return n;
}

function ipv4(v: string): string {
	if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(v) || v.split('.').some((o) => Number(o) > 255)) throw new InvalidArgumentError('an IPv4 address');
	return v;
}

interface Opts {
	node: string;
	nodeIp?: string;
	kubeconfig?: string;
	trustDomain: string;
	caUrl: string;
	caServerName?: string;
	trustBundle: string;
	token: string;
	outboundPort: number;
	hbonePort: number;
	metricsPort: number;
	readinessPort: number;
	drainSeconds: number;
	logLevel: string;
	flowSocket: string;
}

const d = DEFAULT_ZTUNNEL_CONFIG;
const program = new Command('weir-ztunnel')
	.description("Weir's node proxy: captured TCP of meshed pods over HBONE (mTLS + HTTP/2 CONNECT) between nodes")
	.addOption(new Option('--node <name>', "this node's name").env('NODE_NAME').makeOptionMandatory())
	.addOption(new Option('--node-ip <ip>', "this node's address (HBONE leaves from it)").env('NODE_IP').argParser(ipv4))
	.option('--kubeconfig <path>', 'kubeconfig (default: in-cluster)')
	.option('--trust-domain <td>', 'SPIFFE trust domain', trustDomain, d.trustDomain)
	.option('--ca-url <url>', 'the workload CA', d.caUrl)
	.option('--ca-server-name <name>', 'TLS name of the CA when --ca-url is an address')
	.option('--trust-bundle <file>', 'PEM roots (the weir-trust-bundle ConfigMap, mounted)', d.trustBundleFile)
	.option('--token <file>', 'projected ServiceAccount token of audience weir-ca', d.tokenFile)
	.option('--outbound-port <n>', 'capture listener', port, d.ports.outbound)
	.option('--hbone-port <n>', 'HBONE server', port, d.ports.hbone)
	.option('--metrics-port <n>', 'Prometheus metrics and /status', port, d.ports.metrics)
	.option('--readiness-port <n>', '/healthz/ready', port, d.ports.readiness)
	.option('--flow-socket <path>', "the node agent's socket for connection records, which it makes flows ('' sends none)", d.flowSocket)
	.option(
		'--drain-seconds <s>',
		'on SIGTERM, how long open connections may go on (keep it below terminationGracePeriodSeconds)',
		seconds,
		DEFAULT_DRAIN_MS / 1000,
	)
	.addOption(new Option('--log-level <level>').choices(['debug', 'info', 'warn', 'error']).default(d.logLevel));

program.action(async (o: Opts) => {
	const cfg: ZtunnelConfig = {
		nodeName: o.node,
		trustDomain: o.trustDomain,
		caUrl: o.caUrl,
		trustBundleFile: o.trustBundle,
		tokenFile: o.token,
		ports: { outbound: o.outboundPort, hbone: o.hbonePort, metrics: o.metricsPort, readiness: o.readinessPort },
		logLevel: o.logLevel,
		flowSocket: o.flowSocket,
		...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
		...(o.caServerName ? { caServerName: o.caServerName } : {}),
		...(o.nodeIp ? { nodeAddress: o.nodeIp } : {}),
	};
	const log = pino({ level: cfg.logLevel, base: { component: 'ztunnel', node: cfg.nodeName } });
	const z = new Ztunnel(cfg, log);
	await z.start();
	stopOnSignals(
		log,
		`stopping: draining for up to ${o.drainSeconds} s; new connections of meshed pods of this node fail closed until a ztunnel listens again`,
		() => z.stop({ drainMs: o.drainSeconds * 1000 }),
	);
});

program.parseAsync(process.argv).catch((err: Error) => {
	process.stderr.write(`weir-ztunnel: ${err.message}\n`);
	process.exit(1);
});
