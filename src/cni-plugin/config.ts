// Pure parsing and validation of a CNI request: the CNI_* environment and the
// network configuration on stdin. No I/O here; every failure is a CniError with
// the spec's code, and a success is a fully typed request.
import { CniCode, CniError } from './errors.js';

export const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';
const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'];

export interface CniEnv {
	command: CniCommand;
	containerId: string;
	netns: string;
	ifname: string;
	/** CNI_ARGS as key/value pairs (K8S_POD_NAMESPACE, K8S_POD_NAME …) */
	args: Record<string, string>;
	/** CNI_PATH split on ':' */
	path: string[];
}

export interface DnsConfig {
	nameservers?: string[];
	domain?: string;
	search?: string[];
	options?: string[];
}

export interface IpamConfig {
	type: string;
	[key: string]: unknown;
}

export interface ValidAttachment {
	containerID: string;
	ifname: string;
}

/** The Weir plugin's network configuration (one entry of the conflist, as the runtime passes it). */
export interface NetConf {
	cniVersion: CniVersion;
	name: string;
	type: string;
	ipam: IpamConfig;
	dns?: DnsConfig;
	mtu?: number;
	agentSocket?: string;
	prevResult?: Record<string, unknown>;
	/** GC: the attachments the runtime still knows */
	validAttachments?: ValidAttachment[];
	/** the raw object, handed unchanged to the delegated IPAM plugin */
	raw: Record<string, unknown>;
}

// CNI spec: network and container names.
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
// Linux interface names: 1..15 bytes, no '/', ':' or whitespace, not '.' or '..'.
const IFNAME_RE = /^[^\s/:]{1,15}$/;

export function isSupportedVersion(v: unknown): v is CniVersion {
	return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

function invalidEnv(msg: string, details = ''): CniError {
	return new CniError(CniCode.InvalidEnv, msg, details);
}

/** CNI_ARGS: "K1=V1;K2=V2" (empty allowed). */
export function parseCniArgs(s: string | undefined): Record<string, string> {
	const out: Record<string, string> = {};
	if (!s) return out;
	for (const part of s.split(';')) {
		if (part === '') continue;
		const eq = part.indexOf('=');
		if (eq <= 0) throw invalidEnv('invalid CNI_ARGS', `expected KEY=VALUE pairs separated by ';', got '${part}'`);
		out[part.slice(0, eq)] = part.slice(eq + 1);
	}
	return out;
}

/** Validates the environment for the command (spec: which variables each needs). */
export function parseEnv(env: Readonly<Record<string, string | undefined>>): CniEnv {
	const command = env['CNI_COMMAND'];
	if (!command) throw invalidEnv('CNI_COMMAND is not set');
	if (!(COMMANDS as readonly string[]).includes(command)) {
		throw invalidEnv(`unknown CNI_COMMAND '${command}'`, `one of ${COMMANDS.join(', ')}`);
	}
	const cmd = command as CniCommand;
	const containerId = env['CNI_CONTAINERID'] ?? '';
	const netns = env['CNI_NETNS'] ?? '';
	const ifname = env['CNI_IFNAME'] ?? '';
	const path = (env['CNI_PATH'] ?? '').split(':').filter((p) => p !== '');
	const perContainer = cmd === 'ADD' || cmd === 'DEL' || cmd === 'CHECK';
	if (perContainer) {
		if (!containerId) throw invalidEnv('CNI_CONTAINERID is not set');
		if (!CONTAINER_ID_RE.test(containerId)) throw invalidEnv('invalid CNI_CONTAINERID', `'${containerId}' must match ${CONTAINER_ID_RE}`);
		if (!ifname) throw invalidEnv('CNI_IFNAME is not set');
		if (!IFNAME_RE.test(ifname) || ifname === '.' || ifname === '..') {
			throw invalidEnv('invalid CNI_IFNAME', `'${ifname}' is not a valid interface name (1..15 characters, no '/', ':' or spaces)`);
		}
		// DEL may come without a netns (the sandbox is already gone): best effort then.
		if (cmd !== 'DEL' && !netns) throw invalidEnv('CNI_NETNS is not set');
		if (netns && !netns.startsWith('/')) throw invalidEnv('invalid CNI_NETNS', `'${netns}' must be an absolute path`);
	}
	if ((perContainer || cmd === 'GC' || cmd === 'STATUS') && path.length === 0) throw invalidEnv('CNI_PATH is not set');
	return { command: cmd, containerId, netns, ifname, args: parseCniArgs(env['CNI_ARGS']), path };
}

function invalid(msg: string, details = ''): CniError {
	return new CniError(CniCode.InvalidConfig, msg, details);
}

function isObject(v: unknown): v is Record<string, unknown> {
	return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringArray(v: unknown, what: string): string[] {
	if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw invalid(`${what} must be an array of strings`);
	return v as string[];
}

/** The cniVersion to answer errors with: the request's when readable and supported. */
export function replyVersion(stdin: string | Buffer): string {
	try {
		const o = JSON.parse(String(stdin)) as unknown;
		if (isObject(o) && typeof o['cniVersion'] === 'string' && o['cniVersion'].length <= 32) return o['cniVersion'];
	} catch {
		// fall through
	}
	return LATEST_VERSION;
}

/**
 * Parses the network configuration for `command`. VERSION needs only cniVersion
 * (and tolerates an empty stdin); every other command needs the whole config.
 */
export function parseNetConf(stdin: string | Buffer, command: CniCommand = 'ADD'): NetConf {
	const text = String(stdin);
	let o: unknown;
	try {
		o = JSON.parse(text);
	} catch (err) {
		throw new CniError(CniCode.Decode, 'failed to decode the network configuration', (err as Error).message);
	}
	if (!isObject(o)) throw new CniError(CniCode.Decode, 'failed to decode the network configuration', 'expected a JSON object');
	const v = o['cniVersion'];
	if (typeof v !== 'string' || v === '') throw invalid('cniVersion is missing or not a string');
	if (!isSupportedVersion(v)) {
		throw new CniError(CniCode.IncompatibleVersion, `incompatible CNI version ${v}`, `supported versions: ${SUPPORTED_VERSIONS.join(', ')}`);
	}
	const name = o['name'];
	if (typeof name !== 'string' || !NAME_RE.test(name)) throw invalid('invalid network name', `'name' must match ${NAME_RE}`);
	const type = o['type'];
	if (typeof type !== 'string' || type === '') throw invalid("'type' is missing");
	const ipam = o['ipam'];
	if (command !== 'STATUS' && command !== 'VERSION') {
		if (!isObject(ipam)) throw invalid("'ipam' is missing", 'Weir delegates address management: set ipam.type, e.g. host-local');
	}
	if (ipam !== undefined) {
		if (!isObject(ipam)) throw invalid("'ipam' must be an object");
		if (typeof ipam['type'] !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(ipam['type'])) {
			throw invalid('invalid ipam.type', 'the name of an IPAM plugin in CNI_PATH, e.g. host-local');
		}
	}
	const conf: NetConf = { cniVersion: v, name, type, ipam: (ipam ?? { type: '' }) as IpamConfig, raw: o };
	if (o['mtu'] !== undefined) {
		const mtu = o['mtu'];
		if (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw invalid('invalid mtu', 'an integer from 68 to 65535');
		conf.mtu = mtu;
	}
	if (o['agentSocket'] !== undefined) {
		const s = o['agentSocket'];
		if (typeof s !== 'string' || !s.startsWith('/') || s.length > 107) throw invalid('invalid agentSocket', 'an absolute path of at most 107 bytes');
		conf.agentSocket = s;
	}
	if (o['dns'] !== undefined) {
		const d = o['dns'];
		if (!isObject(d)) throw invalid("'dns' must be an object");
		const dns: DnsConfig = {};
		if (d['nameservers'] !== undefined) dns.nameservers = stringArray(d['nameservers'], 'dns.nameservers');
		if (d['domain'] !== undefined) {
			if (typeof d['domain'] !== 'string') throw invalid('dns.domain must be a string');
			dns.domain = d['domain'];
		}
		if (d['search'] !== undefined) dns.search = stringArray(d['search'], 'dns.search');
		if (d['options'] !== undefined) dns.options = stringArray(d['options'], 'dns.options');
		conf.dns = dns;
	}
	if (o['prevResult'] !== undefined) {
		if (!isObject(o['prevResult'])) throw invalid("'prevResult' must be an object");
		conf.prevResult = o['prevResult'];
	}
	const va = o['cni.dev/valid-attachments'];
	if (va !== undefined) {
		if (!Array.isArray(va)) throw invalid("'cni.dev/valid-attachments' must be an array");
		conf.validAttachments = va.map((a, i) => {
			if (!isObject(a) || typeof a['containerID'] !== 'string' || typeof a['ifname'] !== 'string') {
				throw invalid(`'cni.dev/valid-attachments'[${i}] must be {containerID, ifname}`);
			}
			return { containerID: a['containerID'], ifname: a['ifname'] };
		});
	} else if (command === 'GC') {
		throw invalid("GC needs 'cni.dev/valid-attachments'");
	}
	if (o['runtimeConfig'] !== undefined && !isObject(o['runtimeConfig'])) throw invalid("'runtimeConfig' must be an object");
	return conf;
}
