#!/usr/bin/env node
// weir: the command line (src/cli/program.ts).
import { CommanderError } from 'commander';
import { buildCli } from './program.js';

buildCli()
	.parseAsync(process.argv)
	.catch((err: Error & { exitCode?: number; code?: string }) => {
		// commander already printed its own usage errors and help.
		if (err instanceof CommanderError) process.exit(err.exitCode);
		process.stderr.write(`weir: ${err.message}\n`);
		process.exit(1);
	});
