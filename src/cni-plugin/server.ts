// The agent's CNI server: a unix socket the weir-cni forwarder talks to, one request
// per connection (wire.ts). Requests are served concurrently; per-container ordering
// is the plugin's (CniPlugin's keyed lock).
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { Server, Socket, createServer } from 'node:net';
import { dirname } from 'node:path';
import { replyVersion } from './config.js';
import { CniCode, CniError } from './errors.js';
import { CniPlugin, PluginLogger } from './plugin.js';
import { decodeRequest, encodeResponse } from './wire.js';

const MAX_REQUEST = 16 << 20;

export class CniServer {
	private server: Server | undefined;
	private readonly sockets = new Set<Socket>();
	private inflight = 0;

	constructor(
		readonly socketPath: string,
		private readonly plugin: CniPlugin,
		private readonly log: PluginLogger,
	) {}

	get busy(): number {
		return this.inflight;
	}

	async start(): Promise<void> {
		mkdirSync(dirname(this.socketPath), { recursive: true });
		rmSync(this.socketPath, { force: true });
		const server = createServer({ allowHalfOpen: true }, (sock) => this.serve(sock));
		await new Promise<void>((resolve, reject) => {
			server.once('error', reject);
			server.listen(this.socketPath, () => {
				server.off('error', reject);
				resolve();
			});
		});
		chmodSync(this.socketPath, 0o600);
		this.server = server;
		this.log.info({ socket: this.socketPath }, 'CNI server listening');
	}

	private serve(sock: Socket): void {
		this.sockets.add(sock);
		const chunks: Buffer[] = [];
		let size = 0;
		sock.on('data', (d: Buffer) => {
			size += d.length;
			if (size > MAX_REQUEST) {
				sock.destroy();
				return;
			}
			chunks.push(d);
		});
		sock.on('error', () => undefined);
		sock.on('close', () => this.sockets.delete(sock));
		sock.on('end', () => {
			const buf = Buffer.concat(chunks);
			this.inflight++;
			void this.answer(buf)
				.then((out) => {
					if (!sock.destroyed) sock.end(out);
				})
				.finally(() => this.inflight--);
		});
	}

	private async answer(buf: Buffer): Promise<Buffer> {
		let req;
		try {
			req = decodeRequest(buf);
		} catch (err) {
			const e = err instanceof CniError ? err : new CniError(CniCode.Decode, 'malformed request', String(err));
			return encodeResponse(1, JSON.stringify(e.toJSON(replyVersion(''))));
		}
		const res = await this.plugin.handle(req.env, req.stdin);
		return encodeResponse(res.code, res.stdout);
	}

	async stop(): Promise<void> {
		const s = this.server;
		this.server = undefined;
		if (!s) return;
		for (const sock of this.sockets) sock.destroy();
		await new Promise<void>((resolve) => s.close(() => resolve()));
		rmSync(this.socketPath, { force: true });
	}
}
