// The web UI's files (ui/dist, built by `npm run build` in ui/): served as they are,
// read once at start. Only the files found then are served (no path is resolved from
// a request), and the Content-Security-Policy lets the page load nothing but itself and
// talk to nothing but the relay.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { extname, join, relative } from 'node:path';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify';

const TYPES: Record<string, string> = {
	'.html': 'text/html; charset=utf-8',
	'.js': 'text/javascript; charset=utf-8',
	'.css': 'text/css; charset=utf-8',
	'.svg': 'image/svg+xml',
	'.png': 'image/png',
	'.ico': 'image/x-icon',
	'.json': 'application/json',
	'.txt': 'text/plain; charset=utf-8',
};

export const UI_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'";

function files(dir: string, out: string[] = []): string[] {
	for (const name of readdirSync(dir)) {
		const p = join(dir, name);
		if (statSync(p).isDirectory()) files(p, out);
		else out.push(p);
	}
	return out;
}

export interface StaticUiOptions {
	dir: string;
}

export const staticUi: FastifyPluginAsync<StaticUiOptions> = async (app: FastifyInstance, opts) => {
	const index = join(opts.dir, 'index.html');
	if (!existsSync(index)) {
		app.get('/', async (_req, reply) =>
			reply.code(404).type('text/plain').send(`the web UI is not built: ${index} is missing (bash scripts/setup.sh builds ui/dist)\nthe API is at /v1/flows\n`),
		);
		return;
	}
	const served = new Map<string, { body: Buffer; type: string }>();
	for (const f of files(opts.dir)) served.set(`/${relative(opts.dir, f)}`, { body: readFileSync(f), type: TYPES[extname(f)] ?? 'application/octet-stream' });
	const send = (path: string, immutable: boolean) => async (_req: unknown, reply: FastifyReply) => {
		const file = served.get(path)!;
		return reply
			.header('content-security-policy', UI_CSP)
			.header('x-content-type-options', 'nosniff')
			.header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
			.type(file.type)
			.send(file.body);
	};
	for (const path of served.keys()) if (path !== '/index.html') app.get(path, send(path, path.startsWith('/assets/')));
	app.get('/', send('/index.html', false));
	app.get('/index.html', send('/index.html', false));
};
