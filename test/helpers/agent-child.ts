// A stand-in for the agent process in restart tests: opens the datapath on a pin
// root (reusing pinned maps), optionally seeds maps, (re-)attaches to the given
// interfaces in a node namespace, prints one JSON line and exits, leaving the pinned
// datapath to enforce on its own.
//   agent-child.js '<json spec>'
import { Datapath } from '../../src/kernel/datapath.js';
import { EndpointInfo, PolicyEntry } from '../../src/kernel/codecs.js';
import { native } from '../../src/kernel/addon.js';
import { allowRule } from './bpf.js';

interface Spec {
	pinRoot: string;
	netns: string;
	endpoints?: Array<{ ip: string } & EndpointInfo>;
	ipcache?: Array<{ cidr: string; identity: number }>;
	allow?: PolicyEntry[];
	attach: number[];
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const dp = await Datapath.open({ pinRoot: spec.pinRoot });
for (const e of spec.endpoints ?? []) dp.setEndpoint(e.ip, e);
for (const c of spec.ipcache ?? []) dp.setIpcache(c.cidr, c.identity);
for (const a of spec.allow ?? []) allowRule(dp, a);
for (const ifindex of spec.attach) dp.attach(ifindex, { netns: spec.netns });
const progIds = Object.fromEntries(
	spec.attach.map((i) => [i, { ingress: native().tcxQuery(i, 'ingress', spec.netns), egress: native().tcxQuery(i, 'egress', spec.netns) }]),
);
dp.close();
process.stdout.write(`${JSON.stringify({ pid: process.pid, progIds })}\n`);
