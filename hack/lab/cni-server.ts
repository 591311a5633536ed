// A CNI node on its own: the datapath, the endpoint store and the CNI server, without
// the Kubernetes side of the agent. Used by the runtime tests and the benchmark, and
// usable on a node where policy is managed elsewhere. Endpoints are admitted with the
// identity given by --identity (default: the fail-closed "init" identity, both
// directions isolated, as the agent does before its watches have synced).
// rtnetlink work runs on the libuv pool and concurrent ADDs/DELs wait in the kernel
// (RCU grace periods): start it with UV_THREADPOOL_SIZE=16 (the pool is sized before
// any of this module runs, so it cannot be set from here).
//
//   node dist/hack/lab/cni-server.js --pin-root /sys/fs/bpf/weir-x --socket /run/x.sock \
//        --state /run/x/endpoints.json [--host-netns /run/netns/node] [--identity N --open]
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Datapath } from '../../src/kernel/datapath.js';
import { ensureBpffs } from '../../src/kernel/bpffs.js';
import { CniService, failClosedEntry } from '../../src/cni-plugin/service.js';

async function main(): Promise<void> {
	const { values } = parseArgs({
		options: {
			'pin-root': { type: 'string' },
			socket: { type: 'string' },
			state: { type: 'string' },
			'host-netns': { type: 'string' },
			'conf-dir': { type: 'string' },
			'pod-cidr': { type: 'string' },
			identity: { type: 'string' },
			open: { type: 'boolean', default: false },
			'log-level': { type: 'string', default: 'info' },
		},
	});
	const pinRoot = values['pin-root'];
	const socketPath = values.socket;
	const stateFile = values.state;
	if (!pinRoot || !socketPath || !stateFile) throw new Error('--pin-root, --socket and --state are required');
	// Logs go to stderr: stdout is not the CNI's, but keep the habit.
	const log = pino({ level: values['log-level'] ?? 'info' }, pino.destination(2)).child({ component: 'cni' });
	ensureBpffs();
	const datapath = await Datapath.open({ pinRoot });
	const identity = values.identity !== undefined ? Number(values.identity) : undefined;
	const node = CniService.create(
		{
			socketPath,
			stateFile,
			...(values['host-netns'] ? { hostNetns: values['host-netns'] } : {}),
			...(values['conf-dir'] && values['pod-cidr']
				? { confDir: values['conf-dir'], conflist: { name: 'weir', cniVersion: '1.0.0', podCidr: values['pod-cidr'], portmap: true } }
				: {}),
		},
		datapath,
		(ep) => {
			const entry = failClosedEntry(ep);
			if (identity !== undefined) entry.identity = identity;
			if (values.open) entry.flags = 0;
			datapath.setEndpoint(ep.ip, entry);
		},
		log,
	);
	await node.start();
	process.stdout.write('ready\n');
	const stop = (): void => {
		void node.stop().finally(() => {
			datapath.close();
			process.exit(0);
		});
	};
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
	process.stderr.write(`weir cni node: ${(err as Error).stack ?? String(err)}\n`);
	process.exit(1);
});
