// Where this checkout (or the installed package) lives, from source or from dist/.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (package) root. */
export const repoRoot = ((): string => {
	const here = dirname(fileURLToPath(import.meta.url));
	return here.split('/').includes('dist') ? resolve(here, '../..') : resolve(here, '..');
})();

/** A build output under build/ (eBPF objects, the addon). */
export function buildPath(...parts: string[]): string {
	return resolve(repoRoot, 'build', ...parts);
}
