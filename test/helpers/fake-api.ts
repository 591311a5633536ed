// A stand-in for kube-apiserver, run inside a lab namespace next to a real weir-agent:
// it answers the lists and watches the agent makes (src/cluster/watches.ts) from
// objects held in memory, and streams every change to the open watches. It is also
// the test's hands in that namespace, which the test process cannot reach.
//   fake-api.js <port>
// Prints {"event":"ready"} once listening. Reads JSON commands on stdin, one a line,
// each answered with a line carrying its id:
//   {"id","cmd":"put","path":"/api/v1/namespaces","object":{...}}   add or replace (by namespace/name)
//   {"id","cmd":"delete","path":…,"namespace","name"}
//   {"id","cmd":"install","path":…}    a kind whose CRD may be absent (watch-paths.ts) is
//       answered 404 until this: its CRD appears
//   {"id","cmd":"delay","path":…,"ms"}  lists of that path are answered `ms` late (a slow API server)
//   {"id","cmd":"get","url":"http://127.0.0.1:…"}                    a GET from this namespace: {status, body}
import { createServer, type ServerResponse } from 'node:http';
import { createInterface } from 'node:readline';
import { AGENT_LIST_KINDS, AGENT_OPTIONAL_LIST_KINDS } from './watch-paths.js';

/** Any API object: only its metadata is read here. */
export interface FakeApiObject {
	metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [field: string]: unknown };
	[field: string]: unknown;
}
type Obj = FakeApiObject;

export type FakeApiRequest =
	| { cmd: 'put'; path: string; object: Obj }
	| { cmd: 'delete'; path: string; namespace?: string; name: string }
	| { cmd: 'install'; path: string }
	| { cmd: 'delay'; path: string; ms: number }
	| { cmd: 'get'; url: string };
type FakeApiCommand = FakeApiRequest & { id: number };

const KINDS: Readonly<Record<string, string>> = { ...AGENT_LIST_KINDS, ...AGENT_OPTIONAL_LIST_KINDS };
/** the optional kinds installed so far (the others answer 404, as without their CRD) */
const installed = new Set(Object.keys(AGENT_LIST_KINDS));
/** ms by which lists of a path are answered late */
const delays = new Map<string, number>();
const objects = new Map<string, Map<string, Obj>>(Object.keys(KINDS).map((p) => [p, new Map()]));
const watches = new Map<string, Set<ServerResponse>>(Object.keys(KINDS).map((p) => [p, new Set()]));
let rv = 1;
const out = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
const keyOf = (namespace: string | undefined, name: string): string => `${namespace ?? ''}/${name}`;

function send(path: string, type: string, object: Obj): void {
	for (const res of watches.get(path) ?? []) res.write(`${JSON.stringify({ type, object })}\n`);
}

const server = createServer((req, res) => {
	const url = new URL(req.url ?? '/', 'http://x');
	const kind = installed.has(url.pathname) ? KINDS[url.pathname] : undefined;
	if (!kind) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"kind":"Status","code":404}');
	res.writeHead(200, { 'content-type': 'application/json' });
	if (url.searchParams.get('watch') === 'true') {
		const set = watches.get(url.pathname)!;
		set.add(res);
		res.on('close', () => set.delete(res));
		res.write('');
		return;
	}
	const body = JSON.stringify({ kind, apiVersion: 'v1', metadata: { resourceVersion: String(rv) }, items: [...objects.get(url.pathname)!.values()] });
	const late = delays.get(url.pathname);
	if (late) setTimeout(() => res.end(body), late);
	else res.end(body);
});

async function handle(c: FakeApiCommand): Promise<object> {
	switch (c.cmd) {
		case 'put': {
			const store = objects.get(c.path);
			if (!store) throw new Error(`unknown path ${c.path}`);
			if (!installed.has(c.path)) throw new Error(`${c.path} is not installed (its CRD is absent)`);
			const o = c.object;
			const key = keyOf(o.metadata.namespace, o.metadata.name);
			const had = store.has(key);
			o.metadata.resourceVersion = String(++rv);
			o.metadata.uid ??= `uid-${key}`;
			store.set(key, o);
			send(c.path, had ? 'MODIFIED' : 'ADDED', o);
			return {};
		}
		case 'delete': {
			const store = objects.get(c.path);
			const o = store?.get(keyOf(c.namespace, c.name));
			if (!store || !o) throw new Error(`no ${c.path} ${c.name}`);
			store.delete(keyOf(c.namespace, c.name));
			o.metadata.resourceVersion = String(++rv);
			send(c.path, 'DELETED', o);
			return {};
		}
		case 'install': {
			if (!(c.path in KINDS)) throw new Error(`unknown path ${c.path}`);
			installed.add(c.path);
			return {};
		}
		case 'delay': {
			delays.set(c.path, c.ms);
			return {};
		}
		case 'get': {
			const r = await fetch(c.url);
			return { status: r.status, body: await r.text() };
		}
	}
}

server.listen(Number(process.argv[2]), '127.0.0.1', () => out({ event: 'ready' }));
createInterface({ input: process.stdin })
	.on('line', (line) => {
		const c = JSON.parse(line) as FakeApiCommand;
		handle(c).then(
			(r) => out({ id: c.id, ok: true, ...r }),
			(err: Error) => out({ id: c.id, ok: false, error: err.message }),
		);
	})
	.on('close', () => {
		for (const set of watches.values()) for (const r of set) r.destroy();
		server.closeAllConnections();
		server.close();
	});
