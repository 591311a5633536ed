// Runs the real `weir` CLI (what the user types next) and returns its exit code and
// output, stdout and stderr together. Shared by the demo and the cluster tests.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../src/shared/package.js';

export function weirCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; out: string }> {
	return new Promise((resolve) => {
		const child = spawn(process.execPath, [join(repoRoot, 'dist', 'src', 'cli', 'main.js'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
		let out = '';
		child.stdout.on('data', (d: Buffer) => (out += d.toString()));
		child.stderr.on('data', (d: Buffer) => (out += d.toString()));
		child.on('close', (code) => resolve({ code: code ?? 1, out }));
	});
}
