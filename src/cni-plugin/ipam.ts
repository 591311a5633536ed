// IPAM delegated through the spec: exec the `ipam.type` plugin found in CNI_PATH
// with the request's CNI_* environment and the network configuration on stdin.
// The configuration's cniVersion is lowered to the newest one the plugin supports
// (asked once per plugin with VERSION): Debian's host-local speaks up to 1.0.0.
import { runProcess } from '../shared/process.js';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { CniCommand, SUPPORTED_VERSIONS } from './config.js';
import { CniCode, CniError } from './errors.js';

export interface IpamCall {
	command: CniCommand;
	/** plugin name (ipam.type) */
	type: string;
	/** CNI_PATH directories */
	path: string[];
	/** CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS as the runtime gave them */
	env: Record<string, string>;
	/** the network configuration object (handed unchanged but for cniVersion) */
	conf: Record<string, unknown>;
}

/** Runs IPAM plugins. One per agent (it caches the plugins' versions). */
export interface Ipam {
	exec(call: IpamCall): Promise<unknown>;
}

const ORDER = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

export function findPlugin(type: string, path: string[]): string {
	for (const dir of path) {
		const p = join(dir, type);
		try {
			accessSync(p, constants.X_OK);
			return p;
		} catch {
			// next
		}
	}
	throw new CniError(CniCode.InvalidConfig, `IPAM plugin '${type}' not found in CNI_PATH`, `searched ${path.join(':')}`);
}

/** The newest version both sides speak that is not newer than `wanted`. */
export function negotiate(wanted: string, supported: readonly string[]): string | undefined {
	const limit = ORDER.indexOf(wanted);
	let best: string | undefined;
	for (const v of supported) {
		const i = ORDER.indexOf(v);
		if (i >= 0 && i <= limit && (best === undefined || i > ORDER.indexOf(best))) best = v;
	}
	return best;
}

export class ExecIpam implements Ipam {
	private readonly versions = new Map<string, string[]>();

	constructor(private readonly timeoutMs = 30_000) {}

	private async supported(file: string): Promise<string[]> {
		const cached = this.versions.get(file);
		if (cached) return cached;
		const r = await runProcess(file, [], { env: { CNI_COMMAND: 'VERSION' }, input: JSON.stringify({ cniVersion: '1.0.0' }), timeoutMs: this.timeoutMs });
		let list: string[] = [...SUPPORTED_VERSIONS];
		try {
			const o = JSON.parse(r.stdout) as { supportedVersions?: string[] };
			if (r.code === 0 && Array.isArray(o.supportedVersions)) list = o.supportedVersions;
		} catch {
			// keep the default
		}
		this.versions.set(file, list);
		return list;
	}

	async exec(call: IpamCall): Promise<unknown> {
		const file = findPlugin(call.type, call.path);
		const wanted = String(call.conf['cniVersion'] ?? '1.0.0');
		const version = negotiate(wanted, await this.supported(file));
		if (!version) {
			throw new CniError(CniCode.IncompatibleVersion, `IPAM plugin ${call.type} supports no version up to ${wanted}`, file);
		}
		const conf: Record<string, unknown> = { ...call.conf, cniVersion: version };
		// prevResult of a chained call is Weir's own, not the IPAM plugin's business.
		delete conf['prevResult'];
		const env: Record<string, string> = { ...call.env, CNI_COMMAND: call.command, CNI_PATH: call.path.join(':') };
		let r;
		try {
			r = await runProcess(file, [], { env, input: JSON.stringify(conf), timeoutMs: this.timeoutMs });
		} catch (err) {
			throw new CniError(CniCode.Io, `running IPAM plugin ${call.type} failed`, (err as Error).message, { cause: err });
		}
		let parsed: unknown;
		try {
			parsed = r.stdout.trim() ? JSON.parse(r.stdout) : {};
		} catch {
			parsed = undefined;
		}
		if (r.code !== 0) {
			// Propagate the plugin's own error (spec: a delegated error is the caller's error).
			const e = parsed as { code?: unknown; msg?: unknown; details?: unknown } | undefined;
			if (e && typeof e.code === 'number' && typeof e.msg === 'string') {
				throw new CniError(e.code, `IPAM plugin ${call.type}: ${e.msg}`, typeof e.details === 'string' ? e.details : '');
			}
			throw new CniError(CniCode.Other, `IPAM plugin ${call.type} failed (exit ${r.code})`, (r.stderr || r.stdout).trim().slice(0, 500));
		}
		if (parsed === undefined) throw new CniError(CniCode.Decode, `IPAM plugin ${call.type} printed no JSON`, r.stdout.slice(0, 300));
		return parsed;
	}
}
