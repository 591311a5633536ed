// Running a child process to completion: the one runner every caller goes through
// (IPAM plugins, the local cluster's commands, test and lab tools).
import { execFileSync, spawn } from 'node:child_process';

export interface ProcessResult {
	/** exit code; 128 when the process was killed by a signal */
	code: number;
	signal: NodeJS.Signals | null;
	stdout: string;
	stderr: string;
}

export interface ProcessOptions {
	/** written to stdin, which is then closed (closed at once without it) */
	input?: string;
	env?: NodeJS.ProcessEnv;
	cwd?: string;
	/** killed with SIGKILL after this long */
	timeoutMs?: number;
}

/**
 * Runs `cmd args` and resolves with its exit status and output, whatever the status:
 * callers decide what a non-zero exit means. Rejects only when the process cannot be
 * started (ENOENT, EACCES), with the command named.
 */
export function runProcess(cmd: string, args: readonly string[], opts: ProcessOptions = {}): Promise<ProcessResult> {
	return new Promise((resolve, reject) => {
		const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
		const out: Buffer[] = [];
		const err: Buffer[] = [];
		const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
		child.stdout.on('data', (d: Buffer) => out.push(d));
		child.stderr.on('data', (d: Buffer) => err.push(d));
		child.on('error', (e) => {
			clearTimeout(timer);
			reject(Object.assign(new Error(`cannot run ${cmd}: ${e.message}`, { cause: e }), { code: (e as NodeJS.ErrnoException).code }));
		});
		child.on('close', (code, signal) => {
			clearTimeout(timer);
			resolve({ code: code ?? 128, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
		});
		child.stdin.on('error', () => undefined); // a process that exits without reading its input
		child.stdin.end(opts.input ?? '');
	});
}

/** One line naming a failed command, its status and what it said. */
export function describeFailure(cmd: string, args: readonly string[], r: Pick<ProcessResult, 'code' | 'signal' | 'stdout' | 'stderr'>): string {
	const why = r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
	return `${[cmd, ...args].join(' ')}: ${why}\n${r.stderr.trim() || r.stdout.trim()}`.trim();
}

/**
 * The synchronous form, for setup and teardown steps (ip, sysctl): returns stdout,
 * throws an Error naming the command and its stderr on a non-zero exit unless
 * `allowFail` (then '' is returned).
 */
export function runSync(cmd: string, args: readonly string[], opts: { input?: string; allowFail?: boolean } = {}): string {
	try {
		return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], input: opts.input ?? '' });
	} catch (err) {
		if (opts.allowFail) return '';
		const e = err as { stderr?: string; message: string };
		throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`, { cause: err });
	}
}
