// An EndpointSource read from a JSON file (an array of LocalEndpoint): for labs and
// tests that wire pods themselves, and for inspecting a node's endpoints by hand.
// The file is re-read when it changes; a bad file keeps the last good list and logs.
import { existsSync, readFileSync, watch, FSWatcher } from 'node:fs';
import { dirname, basename } from 'node:path';
import type { EndpointSource, LocalEndpoint } from '../shared/endpoint.js';

export class EndpointFileError extends Error {
	readonly code = 'WEIR_ERR_ENDPOINT_FILE';
}

export function parseEndpointFile(text: string, path: string): LocalEndpoint[] {
	let data: unknown;
	try {
		data = JSON.parse(text);
	} catch (err) {
		throw new EndpointFileError(`${path}: not JSON (${(err as Error).message})`);
	}
	if (!Array.isArray(data)) throw new EndpointFileError(`${path}: expected an array of endpoints`);
	return data.map((e: unknown, i) => {
		const o = e as Record<string, unknown>;
		for (const k of ['namespace', 'pod', 'ip'] as const) {
			if (typeof o?.[k] !== 'string' || !o[k]) throw new EndpointFileError(`${path}[${i}]: '${k}' must be a non-empty string`);
		}
		for (const k of ['epId', 'ifindex'] as const) {
			if (!Number.isInteger(o[k]) || (o[k] as number) <= 0) throw new EndpointFileError(`${path}[${i}]: '${k}' must be a positive integer`);
		}
		return { namespace: o['namespace'] as string, pod: o['pod'] as string, ip: o['ip'] as string, epId: o['epId'] as number, ifindex: o['ifindex'] as number };
	});
}

export class FileEndpointSource implements EndpointSource {
	private endpoints: LocalEndpoint[] = [];
	private readonly listeners: Array<() => void> = [];
	private watcher: FSWatcher | undefined;

	constructor(
		readonly path: string,
		private readonly log: { warn(obj: object, msg: string): void },
	) {
		this.reload();
		// Watch the directory: editors and atomic renames replace the file itself.
		this.watcher = watch(dirname(path), (_ev, name) => {
			if (name === basename(path)) this.reload();
		});
		this.watcher.unref();
	}

	private reload(): void {
		if (!existsSync(this.path)) {
			this.endpoints = [];
		} else {
			try {
				this.endpoints = parseEndpointFile(readFileSync(this.path, 'utf8'), this.path);
			} catch (err) {
				this.log.warn({ err: (err as Error).message }, 'endpoint file unreadable; keeping the last good list');
				return;
			}
		}
		for (const l of this.listeners) l();
	}

	list(): readonly LocalEndpoint[] {
		return this.endpoints;
	}

	onChange(cb: () => void): void {
		this.listeners.push(cb);
	}

	close(): void {
		this.watcher?.close();
	}
}
