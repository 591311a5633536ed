import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, from either test/helpers or dist/test/helpers. */
export const repoRoot = ((): string => {
	const here = dirname(fileURLToPath(import.meta.url));
	return here.includes('/dist/') ? resolve(here, '../../..') : resolve(here, '../..');
})();
