#!/usr/bin/env node
// weir-agent: the per-node agent (src/agent/app.ts builds it; src/agent/config.ts reads
// its configuration).
import pino from 'pino';
import { AgentConfig, buildAgent } from './app.js';
import { MainOptions, buildMainCli, cniConfig } from './config.js';
import { FileEndpointSource } from './endpoint-file.js';
import type { EndpointSource } from '../shared/endpoint.js';
import { stopOnSignals } from '../shared/cli.js';

async function run(cfg: AgentConfig, o: MainOptions): Promise<void> {
	const log = pino({ level: cfg.logLevel, base: { component: 'agent', node: cfg.nodeName } });
	// Local endpoints: from a JSON file (labs), else from the CNI server's store.
	let endpoints: EndpointSource | undefined;
	if (o.endpointsFile) endpoints = new FileEndpointSource(o.endpointsFile, log.child({ component: 'endpoints' }));
	else cfg.cni = cniConfig(o);
	const agent = await buildAgent(cfg, endpoints, log);
	await agent.start();
	log.info({ pinRoot: cfg.pinRoot }, 'agent started');
	stopOnSignals(log, 'stopping; the pinned datapath keeps enforcing', () => agent.stop());
}

buildMainCli(run)
	.parseAsync(process.argv)
	.catch((err: Error) => {
		process.stderr.write(`weir-agent: ${err.message}\n`);
		process.exit(1);
	});
