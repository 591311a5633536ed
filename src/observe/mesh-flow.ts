// The ztunnel's connection records as flows (pure): one record (opened, closed or
// refused; src/shared/mesh-flow-record.ts) becomes one flow of the reporting node, its
// ends named from the agent's own view of the pods (with the record's names where the
// agent knows no pod at the address), the verdict FORWARDED for an open or close and
// DROPPED for a refusal, with its reason and the AuthorizationPolicy behind it.
import { Identity } from '../kernel/layout.js';
import { MESH_DROP_REASONS, type MeshFlowRecord, type MeshFlowRecordEnd } from '../shared/mesh-flow-record.js';
import { endpoint, summarize, type Flow, type FlowContext, type FlowEndpoint, type FlowMesh, type FlowPolicyRef } from './flow.js';

/** `match` of a mesh flow: the ztunnel's decision, not a datapath match kind. */
export const MESH_MATCH = 'ztunnel';

function end(ctx: FlowContext, e: MeshFlowRecordEnd): FlowEndpoint {
	// port 0: not known to the reporter (the destination's ztunnel never learns the client's)
	const out = endpoint(ctx, e.ip, ctx.identityOf?.(e.ip) ?? Identity.Unknown, e.port || undefined);
	if (out.pod === undefined && e.pod !== undefined) {
		// a pod the agent has not indexed (yet): the ztunnel's names
		delete out.reserved;
		if (e.namespace !== undefined) out.namespace = e.namespace;
		out.pod = e.pod;
		if (e.workload !== undefined) out.workload = e.workload;
	}
	return out;
}

function authorizationPolicy(full: string): FlowPolicyRef {
	const [namespace, name] = full.split('/') as [string, string];
	return { kind: 'AuthorizationPolicy', namespace, name };
}

export function meshFlow(r: MeshFlowRecord, ctx: FlowContext): Flow {
	const mesh: FlowMesh = { event: r.event, reporter: r.reporter, security: r.security };
	if (r.source.identity) mesh.sourceIdentity = r.source.identity;
	if (r.destination.identity) mesh.destinationIdentity = r.destination.identity;
	if (r.bytesSent !== undefined) mesh.bytesSent = r.bytesSent;
	if (r.bytesReceived !== undefined) mesh.bytesReceived = r.bytesReceived;
	if (r.durationMs !== undefined) mesh.durationMs = r.durationMs;
	if (r.authorizationPolicy) mesh.authorizationPolicy = r.authorizationPolicy;
	if (r.code !== undefined) mesh.code = r.code;
	if (r.reason !== undefined) mesh.reason = r.reason;
	const refused = r.event === 'refused';
	const flow: Flow = {
		time: new Date(Date.parse(r.time)).toISOString(),
		node: ctx.node,
		verdict: refused ? 'DROPPED' : 'FORWARDED',
		direction: r.reporter === 'source' ? 'egress' : 'ingress',
		isReply: false,
		ipVersion: 'IPv4',
		protocol: 'TCP',
		source: end(ctx, r.source),
		destination: end(ctx, r.destination),
		match: MESH_MATCH,
		mesh,
		summary: '',
	};
	if (refused) {
		const reason = r.dropReason ?? 'HBONE_REFUSED';
		flow.dropReason = reason;
		flow.dropReasonDesc = r.reason ?? MESH_DROP_REASONS[reason];
	}
	// The policy where the relay, its service map and the UI read a verdict's policy.
	if (r.authorizationPolicy) {
		if (!refused) flow.allowedBy = authorizationPolicy(r.authorizationPolicy);
		else if (r.dropReason === 'AUTHZ_DENIED') flow.isolatedBy = [authorizationPolicy(r.authorizationPolicy)];
	}
	flow.summary = summarize(flow);
	return flow;
}
