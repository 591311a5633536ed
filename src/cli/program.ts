// The `weir` command line: its subcommands, each from its own module.
import { Command } from 'commander';
import { observeCommand } from './observe.js';
import { statusCommand } from './status.js';
import { uiCommand } from './ui.js';

export function buildCli(out: (s: string) => void = (s) => void process.stdout.write(`${s}\n`)): Command {
	// exitOverride: errors become exceptions; each subcommand copies it (and the other
	// settings) from the program before it is added.
	const program = new Command('weir').description('Weir: sidecarless service mesh and eBPF NetworkPolicy for Kubernetes').exitOverride();
	for (const cmd of [observeCommand(out), statusCommand(out), uiCommand(out)]) program.addCommand(cmd.copyInheritedSettings(program));
	return program;
}
