// weir-agent's configuration: flags, then a directory of one-file-per-key settings (a
// mounted ConfigMap, as Cilium does), then defaults. See docs/configuration.md.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { AgentConfig, DEFAULT_AGENT_CONFIG } from './app.js';
import { DEFAULT_CNI_CONFIG } from '../cni-plugin/service.js';
import { DEFAULTS } from '../shared/defaults.js';
import { buildPath } from '../shared/package.js';

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
	'kube-proxy-replacement': 'kubeProxyReplacement',
	'cgroup-root': 'cgroupRoot',
	mesh: 'mesh',
	'ztunnel-flow-socket': 'ztunnelFlowSocket',
	'root-namespace': 'rootNamespace',
} as const satisfies Record<string, keyof AgentConfig>;

const NUMERIC = new Set<keyof AgentConfig>(['observerPort', 'flowBuffer', 'ctGcIntervalMs']);
const BOOLEAN = new Set<keyof AgentConfig>(['kubeProxyReplacement', 'mesh']);
/** digits only: '' (an empty ConfigMap value), '1e3' or '0x10' are not settings */
const WHOLE = /^\d+$/;

export class ConfigError extends Error {
	readonly code = 'WEIR_ERR_CONFIG';
}

/** Reads a config directory; unknown keys are an error (a typo must not pass silently). */
export function readConfigDir(dir: string): Partial<AgentConfig> {
	const out: Record<string, string | number | boolean> = {};
	if (!existsSync(dir)) return {};
	for (const name of readdirSync(dir)) {
		if (name.startsWith('..') || name.startsWith('.')) continue; // ConfigMap mount internals
		const field = (CONFIG_KEYS as Record<string, keyof AgentConfig>)[name];
		if (!field) throw new ConfigError(`${join(dir, name)}: unknown setting '${name}' (known: ${Object.keys(CONFIG_KEYS).join(', ')})`);
		const raw = readFileSync(join(dir, name), 'utf8').trim();
		if (NUMERIC.has(field)) {
			if (!WHOLE.test(raw)) throw new ConfigError(`${join(dir, name)}: '${raw}' is not a whole number`);
			out[field] = Number(raw);
		} else if (BOOLEAN.has(field)) {
			if (raw !== 'true' && raw !== 'false') throw new ConfigError(`${join(dir, name)}: '${raw}' is neither true nor false`);
			out[field] = raw === 'true';
		} else {
			out[field] = raw;
		}
	}
	return out as Partial<AgentConfig>;
}

function bool(v: string): boolean {
	if (v !== 'true' && v !== 'false') throw new InvalidArgumentError('true or false');
	return v === 'true';
}

function int(v: string): number {
	if (!WHOLE.test(v)) throw new InvalidArgumentError('a whole number');
	return Number(v);
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
	kubeProxyReplacement?: boolean;
	cgroupRoot?: string;
	mesh?: boolean;
	ztunnelFlowSocket?: string;
	rootNamespace?: string;
	configDir?: string;
	endpointsFile?: string;
	cniSocket?: string;
	cniStateFile?: string;
	cniConfDir?: string;
	cniBinDir?: string;
	cniPlugin?: string;
	cniVersion?: string;
	podCidr?: string;
	portmap?: boolean;
}

/**
 * The CNI server's configuration from the flags (unless endpoints come from a file).
 * The conflist names the network 'weir', chains portmap and uses the node's PodCIDR
 * (from --pod-cidr, else from the Node object once the watches have it).
 */
export function cniConfig(o: MainOptions): AgentConfig['cni'] {
	if (o.endpointsFile) return undefined;
	return {
		socketPath: o.cniSocket ?? DEFAULT_CNI_CONFIG.socketPath,
		stateFile: o.cniStateFile ?? DEFAULT_CNI_CONFIG.stateFile,
		confDir: o.cniConfDir ?? DEFAULTS.cniConfDir,
		binDir: o.cniBinDir ?? DEFAULTS.cniBinDir,
		pluginSource: o.cniPlugin ?? buildPath('cni/weir-cni'),
		conflist: {
			name: 'weir',
			cniVersion: o.cniVersion ?? '1.0.0',
			portmap: o.portmap ?? true,
			...(o.podCidr ? { podCidr: o.podCidr } : {}),
		},
	};
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
	if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(cfg.rootNamespace)) throw new ConfigError(`root-namespace '${cfg.rootNamespace}' is not a namespace name`);
	return cfg;
}

export function buildMainCli(run: (cfg: AgentConfig, o: MainOptions) => Promise<void>): Command {
	return (
		new Command('weir-agent')
			.description('Weir node agent: datapath, NetworkPolicy enforcement, flows')
			.option('--node-name <name>', 'this node (default: $NODE_NAME)')
			// No commander default here: it would hide pin-root in --config-dir (resolveConfig applies the default).
			.option('--pin-root <dir>', `bpffs directory of this node (default: ${DEFAULT_AGENT_CONFIG.pinRoot})`)
			.option('--kubeconfig <path>', 'kubeconfig (default: in-cluster service account)')
			.option('--observer-host <addr>', 'observer API and metrics address')
			.option('--observer-port <port>', 'observer API and metrics port', int)
			.option('--flow-buffer <n>', 'flows kept in memory', int)
			.option('--ct-gc-interval-ms <ms>', 'conntrack GC period', int)
			.option('--log-level <level>', 'pino log level')
			.option('--kube-proxy-replacement <bool>', 'ClusterIP Services load-balanced at connect() by Weir (true), or left to kube-proxy (false)', bool)
			.option('--cgroup-root <dir>', "cgroup v2 directory the socket load balancer attaches to ('auto': this node's, found from the agent's own cgroup)")
			.option(
				'--mesh <bool>',
				"pods that opt in (namespace label weir.io/mesh=enabled …) have their TCP to meshed pods captured by the node's ztunnel (true), or no pod is meshed (false)",
				bool,
			)
			.option(
				'--ztunnel-flow-socket <path>',
				`where the node's ztunnel sends its connection records, each a flow of this node ('' for none) (default: ${DEFAULT_AGENT_CONFIG.ztunnelFlowSocket})`,
			)
			.option(
				'--root-namespace <ns>',
				`the namespace whose PeerAuthentication without a selector applies to the whole mesh (default: ${DEFAULT_AGENT_CONFIG.rootNamespace})`,
			)
			.option('--config-dir <dir>', 'one file per setting (mounted ConfigMap)')
			.option('--endpoints-file <path>', 'read local endpoints from a JSON file instead of the CNI server')
			.option('--cni-socket <path>', 'CNI server socket (weir-cni talks to it)', DEFAULT_CNI_CONFIG.socketPath)
			.option('--cni-state-file <path>', 'CNI endpoint state (survives agent restarts)', DEFAULT_CNI_CONFIG.stateFile)
			.option('--cni-conf-dir <dir>', "the runtime's CNI conf dir (Weir writes 05-weir.conflist there once ready)", DEFAULTS.cniConfDir)
			.option('--cni-bin-dir <dir>', "the runtime's CNI bin dir (weir-cni is installed there)", DEFAULTS.cniBinDir)
			.option('--cni-plugin <path>', 'the weir-cni executable to install (default: build/cni/weir-cni)')
			.option('--cni-version <v>', 'cniVersion of the conflist', '1.0.0')
			.option('--pod-cidr <cidr>', "this node's PodCIDR for host-local (default: the Node object's spec.podCIDR)")
			.option('--no-portmap', 'do not chain portmap (hostPort) after weir-cni')
			.action(async (o: MainOptions) => run(resolveConfig(o), o))
	);
}
