#!/usr/bin/env node
// weir-agent: the per-node agent. Configuration comes from flags, then from a
// directory of one-file-per-key settings (a mounted ConfigMap, as Cilium does),
// then from defaults. See docs/configuration.md.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import pino from 'pino';
import { AgentConfig, DEFAULT_AGENT_CONFIG, EndpointSource, buildAgent } from './app.js';
import { FileEndpointSource } from './endpoint-file.js';

/** ConfigMap keys (files under --config-dir) and the flags they stand for. */
export const CONFIG_KEYS = {
	'node-name': 'nodeName',
	'pin-root': 'pinRoot',
	kubeconfig: 'kubeconfig',
	'observer-host': 'observerHost',
	'observer-port': 'observerPort',
	'flow-buffer': 'flowBuffer',
	'ct-gc-interval-ms': 'ctGcIntervalMs',
	'log-level': 'logLevel',
} as const satisfies Record<string, keyof AgentConfig>;

const NUMERIC = new Set<keyof AgentConfig>(['observerPort', 'flowBuffer', 'ctGcIntervalMs']);

export class ConfigError extends Error {
	readonly code = 'WEIR_ERR_CONFIG';
}

/** Reads a config directory; unknown keys are an error (a typo must not pass silently). */
export function readConfigDir(dir: string): Partial<AgentConfig> {
	const out: Record<string, string | number> = {};
	if (!existsSync(dir)) return {};
	for (const name of readdirSync(dir)) {
		if (name.startsWith('..') || name.startsWith('.')) continue; // ConfigMap mount internals
		const field = (CONFIG_KEYS as Record<string, keyof AgentConfig>)[name];
		if (!field) throw new ConfigError(`${join(dir, name)}: unknown setting '${name}' (known: ${Object.keys(CONFIG_KEYS).join(', ')})`);
		const raw = readFileSync(join(dir, name), 'utf8').trim();
		if (NUMERIC.has(field)) {
			const n = Number(raw);
			if (!Number.isInteger(n) || n < 0) throw new ConfigError(`${join(dir, name)}: '${raw}' is not a whole number`);
			out[field] = n;
		} else {
			out[field] = raw;
		}
	}
	return out as Partial<AgentConfig>;
}

function int(v: string): number {
	const n = Number(v);
	if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('a whole number');
	return n;
}

export interface MainOptions {
	nodeName?: string;
	pinRoot?: string;
	kubeconfig?: string;
	observerHost?: string;
	observerPort?: number;
	flowBuffer?: number;
	ctGcIntervalMs?: number;
	logLevel?: string;
	configDir?: string;
	endpointsFile?: string;
}

export function resolveConfig(o: MainOptions, env: NodeJS.ProcessEnv = process.env): AgentConfig {
	const fromDir = o.configDir ? readConfigDir(o.configDir) : {};
	const pick = <K extends keyof AgentConfig>(k: K): AgentConfig[K] | undefined => (o[k as keyof MainOptions] as AgentConfig[K] | undefined) ?? fromDir[k];
	const nodeName = pick('nodeName') ?? env['NODE_NAME'];
	if (!nodeName) throw new ConfigError('the node name is unknown: pass --node-name or set NODE_NAME (the DaemonSet sets it from spec.nodeName)');
	const cfg: AgentConfig = { ...DEFAULT_AGENT_CONFIG, nodeName };
	for (const k of Object.values(CONFIG_KEYS)) {
		const v = pick(k);
		if (v !== undefined) (cfg as unknown as Record<string, unknown>)[k] = v;
	}
	return cfg;
}

export function buildMainCli(run: (cfg: AgentConfig, o: MainOptions) => Promise<void>): Command {
	return new Command('weir-agent')
		.description('Weir node agent: datapath, NetworkPolicy enforcement, flows')
		.option('--node-name <name>', 'this node (default: $NODE_NAME)')
		.option('--pin-root <dir>', 'bpffs directory of this node', DEFAULT_AGENT_CONFIG.pinRoot)
		.option('--kubeconfig <path>', 'kubeconfig (default: in-cluster service account)')
		.option('--observer-host <addr>', 'observer API and metrics address')
		.option('--observer-port <port>', 'observer API and metrics port', int)
		.option('--flow-buffer <n>', 'flows kept in memory', int)
		.option('--ct-gc-interval-ms <ms>', 'conntrack GC period', int)
		.option('--log-level <level>', 'pino log level')
		.option('--config-dir <dir>', 'one file per setting (mounted ConfigMap)')
		.option('--endpoints-file <path>', 'read local endpoints from a JSON file instead of the CNI server')
		.action(async (o: MainOptions) => run(resolveConfig(o), o));
}

async function run(cfg: AgentConfig, o: MainOptions): Promise<void> {
	const log = pino({ level: cfg.logLevel, base: { component: 'agent', node: cfg.nodeName } });
	let endpoints: EndpointSource;
	if (o.endpointsFile) {
		endpoints = new FileEndpointSource(o.endpointsFile, log.child({ component: 'endpoints' }));
	} else {
		throw new ConfigError('no endpoint source: pass --endpoints-file (the CNI server is not wired in this build)');
	}
	const agent = await buildAgent(cfg, endpoints, log);
	await agent.start();
	log.info({ pinRoot: cfg.pinRoot }, 'agent started');
	const shutdown = (sig: string): void => {
		log.info({ sig }, 'stopping; the pinned datapath keeps enforcing');
		agent.stop().then(
			() => process.exit(0),
			(err: Error) => {
				log.error({ err: err.message }, 'stop failed');
				process.exit(1);
			},
		);
	};
	process.on('SIGTERM', () => shutdown('SIGTERM'));
	process.on('SIGINT', () => shutdown('SIGINT'));
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'));
if (isMain) {
	buildMainCli(run)
		.parseAsync(process.argv)
		.catch((err: Error) => {
			process.stderr.write(`weir-agent: ${err.message}\n`);
			process.exit(1);
		});
}
