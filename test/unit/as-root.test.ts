// scripts/as-root.sh: the two README commands run as root as they are, re-run
// themselves through sudo for a user who has it, and say what to do where there is
// no sudo (a bare machine of this project's image).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { repoRoot } from '../../src/shared/package.js';
import { runProcess } from '../../src/shared/process.js';

const AS_ROOT = resolve(repoRoot, 'scripts/as-root.sh');
const NOBODY = '65534';

function lab(): { dir: string; script: string; done: () => void } {
	const dir = mkdtempSync(join(tmpdir(), 'weir-as-root-'));
	chmodSync(dir, 0o755);
	const script = join(dir, 'job.sh');
	writeFileSync(script, `#!/usr/bin/env bash\nset -euo pipefail\n. ${AS_ROOT} "$0" "$@"\necho "ran as $(id -u) with: $*"\n`, { mode: 0o755 });
	return { dir, script, done: () => rmSync(dir, { recursive: true, force: true }) };
}

test('as root the script just runs, with its arguments', async () => {
	assert.equal(process.getuid?.(), 0, 'this test runs as root (as CI does)');
	const l = lab();
	try {
		const r = await runProcess('bash', [l.script, 'a', 'b c']);
		assert.equal(r.code, 0, r.stderr);
		assert.equal(r.stdout.trim(), 'ran as 0 with: a b c');
	} finally {
		l.done();
	}
});

test('a user without sudo is told to run it as root, and nothing runs', async () => {
	const l = lab();
	try {
		const r = await runProcess('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'env', `PATH=/usr/bin:/bin`, 'bash', l.script, 'x'], {
			cwd: l.dir,
		});
		assert.equal(r.code, 1);
		assert.equal(r.stdout, '', 'the job itself did not run');
		assert.match(r.stderr, /job\.sh needs root .* this machine has no sudo: run it as root/);
	} finally {
		l.done();
	}
});

test('a user with sudo gets the script re-run through it, arguments intact', async () => {
	// Debian's sudo is not installed on this project's image, so a stand-in named sudo
	// records how it was called: what as-root.sh asks of sudo is the behaviour under test.
	const l = lab();
	try {
		const bin = join(l.dir, 'bin');
		const record = join(l.dir, 'sudo-argv');
		mkdirSync(bin, { mode: 0o755 });
		writeFileSync(join(bin, 'sudo'), `#!/bin/sh\nprintf '%s\\n' "$@" > ${record}\n`, { mode: 0o755 });
		chmodSync(l.dir, 0o777);
		const r = await runProcess('setpriv', [
			`--reuid=${NOBODY}`,
			`--regid=${NOBODY}`,
			'--clear-groups',
			'env',
			`PATH=${bin}:/usr/bin:/bin`,
			'bash',
			l.script,
			'a',
			'b c',
		]);
		assert.equal(r.code, 0, r.stderr);
		assert.match(r.stderr, /job\.sh needs root: re-running it with sudo/);
		assert.deepEqual(readFileSync(record, 'utf8').split('\n').slice(0, -1), ['-E', 'bash', l.script, 'a', 'b c']);
	} finally {
		l.done();
	}
});
