// The package itself: where this checkout (or the installed package) lives, from source
// or from dist/, and its version.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (package) root: this file is src/shared/package.ts, or its build under dist/. */
export const repoRoot = ((): string => {
	const here = dirname(fileURLToPath(import.meta.url));
	return here.split('/').includes('dist') ? resolve(here, '../../..') : resolve(here, '../..');
})();

/** A build output under build/ (eBPF objects, the addon). */
export function buildPath(...parts: string[]): string {
	return resolve(repoRoot, 'build', ...parts);
}

function packageJson(): { version?: string; bin?: Record<string, string> } {
	return JSON.parse(readFileSync(resolve(repoRoot, 'package.json'), 'utf8')) as { version?: string; bin?: Record<string, string> };
}

/** Weir's executables and their entry points (package.json "bin", paths from the package root). */
export function executables(): Record<string, string> {
	return { ...(packageJson().bin ?? {}) };
}

let cachedVersion: string | undefined;

/** The version in the package's package.json (the image ships it). */
export function packageVersion(): string {
	if (cachedVersion === undefined) {
		try {
			cachedVersion = String(packageJson().version ?? 'unknown');
		} catch {
			cachedVersion = 'unknown';
		}
	}
	return cachedVersion;
}
