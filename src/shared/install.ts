// Installing an executable into a directory a runtime reads (the CNI bin dir).
import { chmodSync, copyFileSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Copies `source` to `dir/name`, mode 0755, through a temporary file and a rename:
 * a runtime calling the executable at this moment never sees a torn binary.
 */
export function installExecutable(source: string, dir: string, name: string): string {
	mkdirSync(dir, { recursive: true });
	const dest = join(dir, name);
	const tmp = join(dir, `.${name}.tmp-${process.pid}`);
	copyFileSync(source, tmp);
	chmodSync(tmp, 0o755);
	renameSync(tmp, dest);
	return dest;
}
