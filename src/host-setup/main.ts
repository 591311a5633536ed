#!/usr/bin/env node
// weir-host-setup: the DaemonSet's host steps (src/host-setup/setup.ts).
//   weir-host-setup init        the init container: bpffs, weir-cni, missing chained plugins
//   weir-host-setup uninstall   the cleanup DaemonSet: detach, remove pins, capture routing, CNI files, socket dir
import { Command } from 'commander';
import { DEFAULT_NODE_PATHS, NodePaths, SetupReport, initNode, uninstallNode } from './setup.js';

function pathsFrom(o: Partial<NodePaths>): NodePaths {
	const p = { ...DEFAULT_NODE_PATHS };
	for (const [k, v] of Object.entries(o)) if (typeof v === 'string' && k in p) (p as unknown as Record<string, string>)[k] = v;
	return p;
}

function print(cmd: string, rep: SetupReport): void {
	for (const a of rep.actions) process.stdout.write(`${JSON.stringify({ level: 'info', component: 'host-setup', cmd, msg: a })}\n`);
	for (const w of rep.warnings) process.stdout.write(`${JSON.stringify({ level: 'warn', component: 'host-setup', cmd, msg: w })}\n`);
	process.stdout.write(`${JSON.stringify({ level: 'info', component: 'host-setup', cmd, msg: `${cmd} done`, actions: rep.actions.length })}\n`);
}

export function buildSetupCli(): Command {
	const program = new Command('weir-host-setup').description("prepares a node for Weir's agent, or restores it");
	const common = (c: Command): Command =>
		c
			.option('--cni-bin-dir <dir>', 'CNI executables', DEFAULT_NODE_PATHS.cniBinDir)
			.option('--cni-conf-dir <dir>', 'CNI configuration', DEFAULT_NODE_PATHS.cniConfDir)
			.option('--bpffs-root <dir>', 'bpffs mount point', DEFAULT_NODE_PATHS.bpffsRoot)
			.option('--pin-root <dir>', "the datapath's pins", DEFAULT_NODE_PATHS.pinRoot)
			.option('--run-dir <dir>', "the agent's socket directory", DEFAULT_NODE_PATHS.runDir);
	common(program.command('init').description('mount bpffs if missing, install weir-cni (and missing chained plugins)')).action((o: Partial<NodePaths>) =>
		print('init', initNode(pathsFrom(o))),
	);
	common(program.command('uninstall').description("detach Weir's programs, remove its pins, capture routing, CNI config and executables")).action(
		async (o: Partial<NodePaths>) => print('uninstall', await uninstallNode(pathsFrom(o))),
	);
	return program;
}

buildSetupCli()
	.parseAsync(process.argv)
	.catch((err: Error) => {
		process.stderr.write(`weir-host-setup: ${err.message}\n`);
		process.exit(1);
	});
