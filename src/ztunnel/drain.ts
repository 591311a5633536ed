// Graceful drain (Istio ztunnel's `drain`): on SIGTERM the ztunnel stops taking new
// connections, tells its peers (HTTP/2 GOAWAY on every HBONE session, both ways), lets
// the connections it carries finish until a deadline, and then ends what is left. The
// deadline stays below the DaemonSet's terminationGracePeriodSeconds
// (deploy/base/ztunnel.yaml), so the kubelet's SIGKILL never cuts a drain short.
import type { Logger } from 'pino';

/** How long open connections may go on after SIGTERM, by default. */
export const DEFAULT_DRAIN_MS = 10_000;

/** A part of the data path that can be drained (the HBONE server, the HBONE pool). */
export interface Drainable {
	readonly name: string;
	/** Stop accepting new work and tell peers; what is open goes on. */
	beginDrain(): void;
	/** Resolves once nothing is open. */
	idle(): Promise<void>;
	/** End whatever is still open; returns how many connections that tore down. */
	forceClose(): number;
}

export interface DrainReport {
	durationMs: number;
	/** connections torn down at the deadline, by part (absent: it drained in time) */
	forced: Record<string, number>;
}

/** Drains `parts` together; after `deadlineMs` forces the ones still busy. */
export async function drain(parts: Drainable[], deadlineMs: number, log: Logger): Promise<DrainReport> {
	const started = Date.now();
	for (const p of parts) p.beginDrain();
	if (deadlineMs > 0) log.info({ deadlineMs, parts: parts.map((p) => p.name) }, 'draining: no new connections, GOAWAY sent; open connections may finish');
	let timer: NodeJS.Timeout | undefined;
	const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)));
	const forced: Record<string, number> = {};
	await Promise.all(
		parts.map(async (p) => {
			const done = await Promise.race([p.idle().then(() => true), deadline.then(() => false)]);
			if (done) return;
			const n = p.forceClose();
			if (n > 0) forced[p.name] = n;
			await p.idle();
		}),
	);
	clearTimeout(timer);
	const report = { durationMs: Date.now() - started, forced };
	if (deadlineMs > 0 || Object.keys(forced).length)
		log.info(report, Object.keys(forced).length ? 'drained; connections still open at the deadline were ended' : 'drained');
	return report;
}
