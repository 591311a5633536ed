// The module map in the README's architecture section is the rule: every folder of
// src/ is listed there with what it may import, and no import crosses it. Feature
// modules (cni-plugin, policy, observe, …) never import each other; what two of them
// share lives in shared/, and only the composition roots wire them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { repoRoot } from '../../src/shared/package.js';

export interface ModuleRule {
	/** folder under src/, e.g. 'policy' */
	folder: string;
	/** folders it may import, or 'any' (a composition root) */
	mayImport: readonly string[] | 'any';
}

/** Reads the module map table: `| \`src/x/\` | owns … | \`shared\`, \`kernel\` |` (or "anything", or "nothing"). */
export function parseModuleMap(readme: string): ModuleRule[] {
	const at = readme.indexOf('### Module map');
	assert.ok(at >= 0, 'README.md has a "### Module map" section');
	const rules: ModuleRule[] = [];
	for (const line of readme.slice(at).split('\n').slice(1)) {
		if (line.startsWith('#')) break;
		const cells = line.split('|').map((c) => c.trim());
		const folder = /^`src\/([a-z0-9-]+)\/`$/.exec(cells[1] ?? '')?.[1];
		if (!folder) continue;
		const may = cells[3] ?? '';
		if (/^anything/.test(may)) rules.push({ folder, mayImport: 'any' });
		else if (/^nothing/.test(may)) rules.push({ folder, mayImport: [] });
		else rules.push({ folder, mayImport: [...may.matchAll(/`([a-z0-9-]+)`/g)].map((m) => m[1]!) });
	}
	return rules;
}

/** Relative import specifiers of a TypeScript source (static, dynamic, re-exports). */
export function importsOf(source: string): string[] {
	const out: string[] = [];
	for (const m of source.matchAll(
		/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|import\s*\(\s*['"](\.[^'"]+)['"]\s*\)|^import\s*['"](\.[^'"]+)['"]/gm,
	)) {
		out.push((m[1] ?? m[2] ?? m[3])!);
	}
	return out;
}

export interface Violation {
	file: string;
	imports: string;
	why: string;
}

/** Checks every file (path relative to src/ → its source) against the rules. */
export function checkBoundaries(files: ReadonlyMap<string, string>, rules: readonly ModuleRule[]): Violation[] {
	const byFolder = new Map(rules.map((r) => [r.folder, r]));
	const out: Violation[] = [];
	for (const [file, source] of files) {
		const folder = file.split('/')[0]!;
		const rule = byFolder.get(folder);
		if (!file.includes('/')) {
			out.push({ file, imports: '', why: 'a file directly under src/ belongs to no module' });
			continue;
		}
		if (!rule) {
			out.push({ file, imports: '', why: `src/${folder}/ is not in the README's module map` });
			continue;
		}
		for (const spec of importsOf(source)) {
			const target = relative('.', join(dirname(file), spec));
			if (target.startsWith('..')) {
				out.push({ file, imports: spec, why: 'reaches outside src/ (product code depends on no test, hack or bench file)' });
				continue;
			}
			const other = target.split('/')[0]!;
			if (other === folder || rule.mayImport === 'any') continue;
			if (!rule.mayImport.includes(other)) {
				out.push({
					file,
					imports: spec,
					why: `src/${folder}/ may import ${rule.mayImport.length ? rule.mayImport.join(', ') : 'nothing in src/'}, not ${other}`,
				});
			}
		}
	}
	return out;
}

function sources(dir: string, base = dir, out = new Map<string, string>()): Map<string, string> {
	for (const name of readdirSync(dir)) {
		const path = join(dir, name);
		if (statSync(path).isDirectory()) sources(path, base, out);
		else if (/\.tsx?$/.test(name)) out.set(relative(base, path), readFileSync(path, 'utf8'));
	}
	return out;
}

const srcDir = resolve(repoRoot, 'src');
const rules = parseModuleMap(readFileSync(resolve(repoRoot, 'README.md'), 'utf8'));

test('the module map lists every folder of src/, and only those', () => {
	const folders = readdirSync(srcDir)
		.filter((f) => statSync(join(srcDir, f)).isDirectory())
		.sort();
	assert.deepEqual(rules.map((r) => r.folder).sort(), folders);
	for (const r of rules)
		if (r.mayImport !== 'any') for (const f of r.mayImport) assert.ok(folders.includes(f), `src/${r.folder}/ may import '${f}', which is not a folder of src/`);
});

test('no import crosses the module map', () => {
	assert.deepEqual(checkBoundaries(sources(srcDir), rules), []);
});

test('feature modules are siblings: none may import another', () => {
	const features = ['cni-plugin', 'policy', 'observe', 'services'];
	for (const r of rules.filter((x) => features.includes(x.folder))) {
		assert.notEqual(r.mayImport, 'any', `${r.folder} is a feature module, not a composition root`);
		for (const f of features) if (f !== r.folder) assert.ok(!(r.mayImport as readonly string[]).includes(f), `${r.folder} may not import ${f}`);
	}
});

test('only src/kernel/addon.ts loads the native addon', () => {
	for (const [file, source] of sources(srcDir)) {
		if (file === 'kernel/addon.ts') continue;
		assert.doesNotMatch(source, /weir_native\.node|createRequire/, `${file} must go through src/kernel/addon.ts`);
	}
});

/** The web UI's only door into src/: the wire types. */
export const UI_MAY_IMPORT = 'src/shared/wire.ts';

/** Imports of ui/src/ files (path relative to the repository → its source) that leave ui/ for anything but the wire types. */
export function checkUiImports(files: ReadonlyMap<string, string>): Violation[] {
	const out: Violation[] = [];
	for (const [file, source] of files) {
		for (const spec of importsOf(source)) {
			const target = relative('.', join(dirname(file), spec)).replace(/\.js$/, '.ts');
			if (target.startsWith('ui/')) continue;
			if (target === UI_MAY_IMPORT || `${target}.ts` === UI_MAY_IMPORT) continue;
			out.push({ file, imports: spec, why: `the web UI talks to the relay through its API: from outside ui/ it may import only ${UI_MAY_IMPORT}` });
		}
	}
	return out;
}

function uiSources(): Map<string, string> {
	const out = new Map<string, string>();
	const dir = resolve(repoRoot, 'ui', 'src');
	for (const [file, source] of sources(dir)) out.set(join('ui', 'src', file), source);
	return out;
}

test('the web UI imports nothing from src/ but the wire types, and those import nothing', () => {
	const ui = uiSources();
	assert.ok(
		[...ui.keys()].some((f) => f.endsWith('api.ts')),
		'ui/src/ has its sources',
	);
	assert.deepEqual(checkUiImports(ui), []);
	assert.ok(
		[...ui.values()].some((s) => importsOf(s).some((spec) => spec.endsWith('src/shared/wire'))),
		'the UI reads the wire types from src/shared/wire.ts',
	);
	const wire = readFileSync(resolve(repoRoot, UI_MAY_IMPORT), 'utf8');
	assert.doesNotMatch(wire, /^\s*(import|export\s[^\n]*\sfrom)\s/m, `${UI_MAY_IMPORT} imports nothing (the browser build has no Node types)`);
	assert.doesNotMatch(wire, /^\s*export\s+(const|let|var|function|class|enum)\s/m, `${UI_MAY_IMPORT} holds types only`);
	assert.deepEqual(
		checkUiImports(
			new Map([
				['ui/src/a.ts', "import type { Flow } from '../../src/shared/wire';\nimport { x } from './b';"],
				['ui/src/c.tsx', "import { relayApi } from '../../src/relay/api.js';"],
				['ui/src/d.ts', "export { y } from '../../src/shared/defaults';"],
			]),
		).map((v) => `${v.file} ${v.imports}`),
		['ui/src/c.tsx ../../src/relay/api.js', 'ui/src/d.ts ../../src/shared/defaults'],
	);
});

test('the checker finds what it must: a sibling import, a dynamic one, a folder missing from the map', () => {
	const map: ModuleRule[] = [
		{ folder: 'shared', mayImport: [] },
		{ folder: 'policy', mayImport: ['shared'] },
		{ folder: 'observe', mayImport: ['shared'] },
		{ folder: 'agent', mayImport: 'any' },
	];
	const files = new Map([
		['policy/a.ts', "import { x } from '../observe/flow.js';\nimport type { y } from '../shared/y.js';"],
		['observe/b.ts', "const m = await import('../policy/native.js');"],
		['observe/c.ts', "export { z } from '../policy/z.js';"],
		['shared/d.ts', "import { w } from './w.js';"],
		['agent/e.ts', "import { p } from '../policy/a.js';\nimport { o } from '../observe/b.js';"],
		['ztunnel/f.ts', ''],
		['g.ts', ''],
		['policy/h.ts', "import { t } from '../../test/helpers/t.js';"],
	]);
	const v = checkBoundaries(files, map);
	assert.deepEqual(v.map((x) => `${x.file} ${x.imports}`).sort(), [
		'g.ts ',
		'observe/b.ts ../policy/native.js',
		'observe/c.ts ../policy/z.js',
		'policy/a.ts ../observe/flow.js',
		'policy/h.ts ../../test/helpers/t.js',
		'ztunnel/f.ts ',
	]);
	assert.deepEqual(
		parseModuleMap(
			'### Module map\n| folder | owns | may import |\n|---|---|---|\n| `src/a/` | x | `b`, `c` |\n| `src/b/` | y | nothing in `src/` |\n| `src/c/` | z | anything |\n## next\n| `src/d/` | w | anything |',
		),
		[
			{ folder: 'a', mayImport: ['b', 'c'] },
			{ folder: 'b', mayImport: [] },
			{ folder: 'c', mayImport: 'any' },
		],
	);
});
