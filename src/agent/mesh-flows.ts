// The node ztunnel's connection records, as the agent takes them: its socket
// (src/observe/mesh-flow-socket.ts) → a flow of this node (src/observe/mesh-flow.ts) →
// the flow ring (the observer API, the relay, `weir observe`, the UI) and the flow
// metrics, like every datapath flow.
import type { FlowRing } from '../observe/flow-ring.js';
import type { Flow, FlowContext } from '../observe/flow.js';
import { meshFlow } from '../observe/mesh-flow.js';
import { MeshFlowSocket, type MeshFlowSocketLogger } from '../observe/mesh-flow-socket.js';

export interface MeshFlowMetrics {
	flow(f: Flow): void;
	meshRecord(result: 'accepted' | 'malformed'): void;
}

export function meshFlowSocket(o: {
	path: string;
	ctx: FlowContext;
	flows: Pick<FlowRing, 'add'>;
	metrics: MeshFlowMetrics;
	log: MeshFlowSocketLogger;
	/** the clock of the malformed-record log's rate limit (tests) */
	now?: () => number;
}): MeshFlowSocket {
	return new MeshFlowSocket({
		path: o.path,
		log: o.log,
		...(o.now ? { now: o.now } : {}),
		onRecord: (r) => {
			const f = meshFlow(r, o.ctx);
			o.flows.add(f);
			o.metrics.flow(f);
			o.metrics.meshRecord('accepted');
		},
		onMalformed: () => o.metrics.meshRecord('malformed'),
	});
}
