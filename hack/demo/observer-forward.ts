// Reaching each node agent's observer API (:9962 in the node's network namespace)
// from the host, the way the cluster harness reaches the API server: a socat in the
// node's namespace listening on a unix socket, and one on the host's 127.0.0.1
// forwarding to it. Nothing on the host routes into the lab. The forwarders live in
// the cluster's cgroup, so stopping the cluster stops them.
import { DEFAULTS } from '../../src/shared/defaults.js';
import { mkdirSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import type { Cluster } from '../cluster/cluster.js';
import { startDaemon, waitFor } from '../cluster/exec.js';
import { cgroupV2Dir } from '../cluster/resources.js';

export const OBSERVER_BASE_PORT = 19962;

export interface ObserverForward {
	node: string;
	/** http://127.0.0.1:<port> */
	url: string;
}

function portFree(port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const s = createConnection({ host: '127.0.0.1', port });
		s.once('connect', () => {
			s.destroy();
			resolve(false);
		});
		s.once('error', () => resolve(true));
	});
}

function anyFreePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const srv = createServer();
		srv.once('error', reject);
		srv.listen(0, '127.0.0.1', () => {
			const a = srv.address();
			const port = typeof a === 'object' && a ? a.port : 0;
			srv.close(() => resolve(port));
		});
	});
}

/** Node i's observer on 127.0.0.1:(basePort + i), or a free port when that one is taken. */
export async function forwardObservers(c: Cluster, basePort = OBSERVER_BASE_PORT, agentPort: number = DEFAULTS.observerPort): Promise<ObserverForward[]> {
	const cg = cgroupV2Dir(c.name, 'observer');
	mkdirSync(cg, { recursive: true });
	const out: ObserverForward[] = [];
	for (const [i, n] of c.nodes.entries()) {
		// The usual port when free, else any free one (the URL is printed either way).
		const port = (await portFree(basePort + i)) ? basePort + i : await anyFreePort();
		const sock = join(c.dir, `observer-${n.name}.sock`);
		startDaemon({
			argv: ['nsenter', `--net=/run/netns/${n.netns}`, '--', 'socat', `UNIX-LISTEN:${sock},fork,unlink-early,mode=600`, `TCP:127.0.0.1:${agentPort}`],
			logFile: join(c.logDir, `observer-forward-${n.name}.log`),
			cgroupDir: cg,
		});
		startDaemon({
			argv: ['socat', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${sock}`],
			logFile: join(c.logDir, `observer-forward-host-${n.name}.log`),
			cgroupDir: cg,
		});
		const url = `http://127.0.0.1:${port}`;
		await waitFor(
			`observer of ${n.name} at ${url}`,
			15_000,
			async () => {
				try {
					const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
					return r.ok ? true : undefined;
				} catch {
					return undefined;
				}
			},
			200,
		);
		out.push({ node: n.name, url });
	}
	return out;
}
