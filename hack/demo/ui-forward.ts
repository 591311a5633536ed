// The web UI on the host: `weir ui` (the real CLI) left running in the cluster's
// cgroup, so it outlives the demo and stopping the cluster stops it. It forwards
// 127.0.0.1:<port> to the relay Service through the API server's service proxy.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster } from '../cluster/cluster.js';
import { startDaemon, waitFor } from '../cluster/exec.js';
import { cgroupV2Dir } from '../cluster/resources.js';
import { repoRoot } from '../../src/shared/package.js';

export interface UiForward {
	url: string;
	pid: number;
}

/** Starts `weir ui --port <port>` (0: any free port) for the cluster; resolves with the URL it printed. */
export async function startUiForward(c: Cluster, port = 12000): Promise<UiForward> {
	const cg = cgroupV2Dir(c.name, 'ui');
	mkdirSync(cg, { recursive: true });
	const logFile = join(c.logDir, `weir-ui-${Date.now()}.log`);
	const pid = startDaemon({
		argv: [process.execPath, join(repoRoot, 'dist', 'src', 'cli', 'main.js'), 'ui', '--kubeconfig', c.kubeconfig, '--port', String(port)],
		logFile,
		cgroupDir: cg,
	});
	const url = await waitFor(
		'weir ui to print its URL',
		20_000,
		async () => {
			const m = /Weir UI: (http:\/\/\S+)/.exec(readFileSync(logFile, 'utf8'));
			return m?.[1];
		},
		100,
	);
	await waitFor(
		`the relay's API through ${url}`,
		60_000,
		async () => {
			const r = await fetch(`${url}v1/nodes`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
			return r?.ok ? true : undefined;
		},
		500,
	);
	return { url, pid };
}
