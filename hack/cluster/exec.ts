// Thin shell over child processes: every command the harness runs goes through here,
// so failures carry the command line and its stderr.
import { spawn, type SpawnOptions } from 'node:child_process';
import { ProcessResult, describeFailure, runProcess } from '../../src/shared/process.js';
import { openSync, closeSync } from 'node:fs';

/** An error from the local-cluster harness, with a stable code (WEIR_ERR_CLUSTER_*). */
export class ClusterError extends Error {
	readonly code: string;
	constructor(code: string, message: string, options?: { cause?: unknown }) {
		super(message, options);
		this.name = 'ClusterError';
		this.code = code;
	}
}

export interface RunResult {
	stdout: string;
	stderr: string;
	code: number;
}

export interface RunOptions {
	input?: string;
	/** Resolve with a non-zero exit code instead of throwing. */
	allowFail?: boolean;
	env?: NodeJS.ProcessEnv;
	timeoutMs?: number;
	cwd?: string;
}

/** Runs a command to completion and returns its output; throws on a non-zero exit. */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
	let r: ProcessResult;
	try {
		r = await runProcess(cmd, args, opts);
	} catch (err) {
		throw new ClusterError('WEIR_ERR_CLUSTER_EXEC', (err as Error).message, { cause: err });
	}
	if (r.code !== 0 && !opts.allowFail) throw new ClusterError('WEIR_ERR_CLUSTER_EXEC', describeFailure(cmd, args, r));
	return { stdout: r.stdout, stderr: r.stderr, code: r.code };
}

export interface DaemonSpec {
	/** Command and arguments, already prefixed with nsenter when it runs in a node. */
	argv: readonly string[];
	/** stdout and stderr go here (appended). */
	logFile: string;
	/** cgroup v2 directory the process joins before it execs (so a stop can kill it all). */
	cgroupDir: string;
	env?: NodeJS.ProcessEnv;
}

/**
 * Starts a long-running process detached from this one (it outlives a CLI `up`).
 * It joins `cgroupDir` itself before exec, so every descendant (containerd shims,
 * containers) is in a cgroup the harness owns and can kill as a whole.
 */
export function startDaemon(spec: DaemonSpec): number {
	const fd = openSync(spec.logFile, 'a');
	const opts: SpawnOptions = { detached: true, stdio: ['ignore', fd, fd], env: spec.env ?? process.env };
	try {
		const child = spawn('/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', spec.cgroupDir, ...spec.argv], opts);
		if (child.pid === undefined) {
			throw new ClusterError('WEIR_ERR_CLUSTER_EXEC', `cannot start ${spec.argv.join(' ')}`);
		}
		child.unref();
		return child.pid;
	} finally {
		closeSync(fd);
	}
}

export function sleep(ms: number): Promise<void> {
	return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns a value (not undefined) or the deadline passes. */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, intervalMs = 250): Promise<T> {
	const deadline = Date.now() + timeoutMs;
	let last: unknown;
	for (;;) {
		try {
			const v = await check();
			if (v !== undefined) return v;
		} catch (err) {
			last = err;
		}
		if (Date.now() > deadline) {
			const why = last instanceof Error ? `: ${last.message}` : '';
			throw new ClusterError('WEIR_ERR_CLUSTER_TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${what}${why}`, {
				cause: last,
			});
		}
		await sleep(intervalMs);
	}
}

export function pidAlive(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch {
		return false;
	}
}
