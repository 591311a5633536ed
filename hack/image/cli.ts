#!/usr/bin/env node
// node dist/hack/image/cli.js [--ref REF] [--out FILE] [--gzip-size]
// Builds the agent image archive without a daemon (cached by content) and prints where
// it is. Load it with `kind load image-archive FILE` or `ctr -n k8s.io images import FILE`.
import { copyFileSync, createReadStream } from 'node:fs';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import { buildAgentImage } from './agent-image.js';

async function gzipSize(file: string): Promise<number> {
	return new Promise((resolve, reject) => {
		let n = 0;
		createReadStream(file)
			.pipe(createGzip({ level: 6 }))
			.on('data', (c: Buffer) => (n += c.length))
			.on('end', () => resolve(n))
			.on('error', reject);
	});
}

async function main(): Promise<void> {
	const { values } = parseArgs({
		options: { ref: { type: 'string' }, out: { type: 'string' }, 'gzip-size': { type: 'boolean', default: false } },
	});
	const img = await buildAgentImage(values.ref ? { ref: values.ref } : {});
	if (values.out) copyFileSync(img.archive, values.out);
	console.log(`image:   ${img.ref}`);
	console.log(`archive: ${values.out ?? img.archive}`);
	console.log(`size:    ${(img.bytes / 1e6).toFixed(1)} MB (uncompressed layer)`);
	if (values['gzip-size']) console.log(`gzipped: ${((await gzipSize(img.archive)) / 1e6).toFixed(1)} MB`);
}

main().catch((err: Error) => {
	console.error(`build image: ${err.message}`);
	process.exit(1);
});
