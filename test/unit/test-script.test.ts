// scripts/test.sh itself, run in a scratch copy of the repository layout: its setup
// and cluster build steps are stubs that leave a mark, dist/test/ holds what each case
// needs. A requested tier without test files and an unknown tier are errors.
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../src/shared/package.js';

let root: string;

beforeEach(() => {
	root = mkdtempSync(join(tmpdir(), 'weir-test-sh-'));
	mkdirSync(join(root, 'scripts'));
	mkdirSync(join(root, 'hack/cluster'), { recursive: true });
	copyFileSync(join(repoRoot, 'scripts/test.sh'), join(root, 'scripts/test.sh'));
	copyFileSync(join(repoRoot, 'scripts/as-root.sh'), join(root, 'scripts/as-root.sh'));
	writeFileSync(join(root, 'scripts/setup.sh'), 'touch setup-ran\n');
	writeFileSync(join(root, 'scripts/lint.sh'), 'touch lint-ran\n');
	writeFileSync(join(root, 'hack/cluster/build-binaries.sh'), 'touch cluster-built\n');
	tier('unit', 'passes');
	mkdirSync(join(root, 'dist/test/kernel'), { recursive: true }); // built, but no test files
	writeFileSync(join(root, 'dist/test/kernel/helper.js'), '');
});

afterEach(() => {
	rmSync(root, { recursive: true, force: true });
});

/** A tier with one test file that passes. */
function tier(name: string, title: string): void {
	mkdirSync(join(root, 'dist/test', name), { recursive: true });
	writeFileSync(join(root, 'dist/test', name, `${name}.test.js`), `require('node:test').test(${JSON.stringify(`${name} ${title}`)}, () => {});\n`);
}

function testSh(...tiers: string[]): { code: number; out: string } {
	// Not as a child of this test run: the inner runner reports in its own format.
	const { NODE_TEST_CONTEXT: _, ...env } = process.env;
	const r = spawnSync('bash', [join(root, 'scripts/test.sh'), ...tiers], { encoding: 'utf8', cwd: tmpdir(), env, timeout: 60_000 });
	return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

test('a tier with test files runs them after setup and lint', () => {
	const r = testSh('unit');
	assert.equal(r.code, 0, r.out);
	assert.match(r.out, /unit passes/);
	assert.ok(existsSync(join(root, 'setup-ran')));
	assert.ok(existsSync(join(root, 'lint-ran')), 'lint runs before the tests');
	assert.ok(!existsSync(join(root, 'cluster-built')), 'the cluster build is only for the cluster tier');
});

test('a requested tier with no test files fails, also next to one that has them', () => {
	for (const tiers of [['kernel'], ['unit', 'kernel'], ['runtime', 'unit']]) {
		const r = testSh(...tiers);
		assert.equal(r.code, 1, `${tiers.join(' ')}: ${r.out}`);
		const empty = tiers.filter((t) => t !== 'unit');
		assert.ok(r.out.includes(`no test files in dist/test/ for tier(s): ${empty.join(' ')}`), r.out);
		assert.doesNotMatch(r.out, /unit passes/, 'nothing runs');
	}
});

test('no argument means every tier, and every tier must have tests', () => {
	const missing = testSh();
	assert.equal(missing.code, 1);
	assert.ok(missing.out.includes('for tier(s): kernel runtime cluster'), missing.out);
	for (const t of ['kernel', 'runtime', 'cluster']) tier(t, 'passes');
	const all = testSh();
	assert.equal(all.code, 0, all.out);
	for (const t of ['unit', 'kernel', 'runtime', 'cluster']) assert.match(all.out, new RegExp(`${t} passes`));
	assert.ok(existsSync(join(root, 'cluster-built')), 'the cluster tier builds its binaries first');
});

test('an unknown tier is an error naming the known tiers, before any setup', () => {
	for (const bad of ['units', 'e2e', '']) {
		const r = testSh('unit', bad);
		assert.equal(r.code, 2, `'${bad}': ${r.out}`);
		assert.ok(r.out.includes(`unknown tier '${bad}' (known tiers: unit kernel runtime cluster)`), r.out);
	}
	assert.ok(!existsSync(join(root, 'setup-ran')));
	assert.ok(!existsSync(join(root, 'lint-ran')));
});
