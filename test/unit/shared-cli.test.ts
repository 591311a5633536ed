// The command-line helpers the executables share (src/shared/cli.ts): argument parsers
// from checks, and the stop on SIGTERM/SIGINT, in real child processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { checkedArg } from '../../src/shared/cli.js';
import { repoRoot } from '../../src/shared/package.js';

class UsageError extends Error {}

function run(args: string[], onSpawn?: (pid: number) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
	return new Promise((resolve) => {
		const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
		let stdout = '';
		let stderr = '';
		c.stdout.on('data', (d: Buffer) => {
			stdout += d.toString();
			if (stdout.includes('ready\n') && onSpawn) {
				onSpawn(c.pid!);
				onSpawn = undefined;
			}
		});
		c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
		c.on('close', (code) => resolve({ code, stdout, stderr }));
	});
}

test('checkedArg: a usage error becomes commander’s, with its message; anything else propagates', () => {
	const parse = checkedArg(
		(v) => {
			if (v === 'bad') throw new UsageError('not a good value');
			if (v === 'bug') throw new TypeError('a bug');
			return v.toUpperCase();
		},
		(e) => e instanceof UsageError,
	);
	assert.equal(parse('ok'), 'OK');
	assert.throws(
		() => parse('bad'),
		(e: Error) => e instanceof InvalidArgumentError && e.message === 'not a good value',
	);
	assert.throws(() => parse('bug'), TypeError);
});

test('weir-controller and weir-ztunnel refuse a bad trust domain alike', async () => {
	const out = await Promise.all(
		[['controller'], ['ztunnel', '--node', 'n1']].map(([exe, ...args]) =>
			run([join(repoRoot, 'dist/src', exe!, 'main.js'), ...args, '--trust-domain', 'Not_A.Domain']),
		),
	);
	for (const o of out) {
		assert.equal(o.code, 1);
		assert.match(o.stderr, /option '--trust-domain <td>' argument 'Not_A.Domain' is invalid\. .*trust domain/i);
	}
	assert.equal(out[0]!.stderr.replace(/^.*is invalid\. /s, ''), out[1]!.stderr.replace(/^.*is invalid\. /s, ''), 'the same message');
});

test('stopOnSignals: logs the signal, awaits the stop, exits 0 — or 1 saying why the stop failed', async () => {
	const script = (fails: boolean): string => `
		import { stopOnSignals } from ${JSON.stringify(join(repoRoot, 'dist/src/shared/cli.js'))};
		const log = { info: (o, m) => console.log(JSON.stringify({ ...o, msg: m })), error: (o, m) => console.log(JSON.stringify({ ...o, msg: m })) };
		stopOnSignals(log, 'stopping', async (sig) => { await new Promise((r) => setTimeout(r, 50)); console.log('stopped on ' + sig); if (${fails}) throw new Error('a part would not stop'); });
		console.log('ready');
		setInterval(() => undefined, 1000);
	`;
	for (const [sig, fails] of [
		['SIGTERM', false],
		['SIGINT', false],
		['SIGTERM', true],
	] as const) {
		const r = await run(['--input-type=module', '-e', script(fails)], (pid) => process.kill(pid, sig));
		assert.equal(r.code, fails ? 1 : 0, r.stderr);
		const lines = r.stdout.trim().split('\n');
		assert.deepEqual(JSON.parse(lines[1]!), { sig, msg: 'stopping' });
		assert.equal(lines[2], `stopped on ${sig}`);
		if (fails) assert.deepEqual(JSON.parse(lines[3]!), { err: 'a part would not stop', msg: 'stop failed' });
	}
});
