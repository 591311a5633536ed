// The flow API's wire: the JSON shapes the node agents' observer API and the relay's
// API send (flows, nodes, the service map, the lines of a follow stream). Types only,
// and no imports: the web UI (ui/, built for the browser with no Node types) imports
// this very file, so a change here breaks the UI's type check as well as the server's.

export type FlowVerdict = 'FORWARDED' | 'DROPPED' | 'AUDIT';

export interface FlowServiceRef {
	namespace: string;
	name: string;
	/** the Service port's name (or number) */
	port: string;
	/** the ClusterIP and port the client connected to */
	vip: string;
	vipPort: number;
}

export interface FlowEndpoint {
	ip: string;
	port?: number;
	identity: number;
	namespace?: string;
	pod?: string;
	workload?: string;
	/** 'key=value', sorted */
	labels: string[];
	/** for non-pod ends: host, remote-node, world or cidr:<prefix> */
	reserved?: string;
	/** (destination) the Service the client addressed; the socket load balancer chose this backend */
	service?: FlowServiceRef;
	/** a pod of the reporting node that is meshed: its TCP goes through that node's ztunnel (absent: not, or not known there) */
	meshed?: boolean;
}

/**
 * A policy behind a verdict: a NetworkPolicy, or (a drop as MTLS_REQUIRED) the Istio
 * PeerAuthentication that made the destination STRICT.
 */
export interface FlowPolicyRef {
	/** NetworkPolicy (the datapath's verdicts), Istio's PeerAuthentication (STRICT in the datapath) or AuthorizationPolicy (the ztunnel's, on mesh flows) */
	kind: 'NetworkPolicy' | 'PeerAuthentication' | 'AuthorizationPolicy';
	namespace: string;
	name: string;
	/** which rule matched, e.g. ingress[0] */
	rule?: string;
}

/**
 * The L4 mesh part of a flow the node's ztunnel reported: one proxied connection's
 * event, as seen by the source's ztunnel (`reporter: 'source'`, the flow's direction
 * egress) or the destination's (`'destination'`, ingress). Names after Istio's TCP
 * metrics (`reporter`, `connection_security_policy`).
 */
export interface FlowMesh {
	event: 'open' | 'close' | 'refused';
	reporter: 'source' | 'destination';
	/** mutual_tls: HBONE between the two identities; none: plaintext */
	security: 'mutual_tls' | 'none';
	/** SPIFFE IDs: authenticated (mutual_tls), or the workload's own where the ztunnel knows it */
	sourceIdentity?: string;
	destinationIdentity?: string;
	/** (close) bytes from the source to the destination, and back */
	bytesSent?: number;
	bytesReceived?: number;
	/** (close) how long the connection was open */
	durationMs?: number;
	/** 'namespace/name' of the AuthorizationPolicy that allowed or denied it (the destination decides; a refused source learns it from the answer) */
	authorizationPolicy?: string;
	/** (refused) the ztunnel's code: the HBONE answer's HTTP status, or a WEIR_ERR_* */
	code?: string;
	/** (refused) why, in words; (close) the error that ended the connection, if one did */
	reason?: string;
}

/** One flow, after Hubble's: what the datapath saw, both ends named, the policy behind the verdict. */
export interface Flow {
	/** RFC 3339, ms precision */
	time: string;
	node: string;
	verdict: FlowVerdict;
	dropReason?: string;
	dropReasonDesc?: string;
	direction: 'ingress' | 'egress';
	isReply: boolean;
	ipVersion: 'IPv4';
	protocol: 'TCP' | 'UDP' | 'SCTP' | 'ICMPv4' | string;
	tcpFlags?: string[];
	icmp?: { type: number; code: number };
	source: FlowEndpoint;
	destination: FlowEndpoint;
	/** the policy whose rule allowed the flow */
	allowedBy?: FlowPolicyRef;
	/** for policy drops: the policies that isolate the endpoint in this direction; for MTLS_REQUIRED, the PeerAuthentication */
	isolatedBy?: FlowPolicyRef[];
	/** how the verdict was reached (datapath match kind) */
	match: string;
	/**
	 * (refusals of the socket load balancer) refusals of the same client to the same
	 * frontend since the previous such flow, counted without a flow of their own: the
	 * datapath reports one per client netns and frontend per interval (docs/services.md)
	 */
	suppressed?: number;
	/** a connection the node's ztunnel proxied (docs/ztunnel.md, "Flows"); absent on the datapath's flows */
	mesh?: FlowMesh;
	summary: string;
}

export type NodeState = 'connecting' | 'connected' | 'unavailable';

/** A node as the relay reads it (GET /v1/nodes). */
export interface NodeStatusView {
	name: string;
	state: NodeState;
	/** when the node entered this state */
	since: string;
	/** where the relay reads it */
	endpoint?: string;
	pod?: string;
	/** why it is unavailable */
	error?: string;
	flows: number;
	lastFlowTime?: string;
	/** times the stream was re-opened */
	reconnects: number;
	/** flows the node dropped from its stream to the relay because the relay read too slowly */
	lost?: number;
}

/** A box of the service map. */
export interface MapNode {
	/** 'namespace/workload', or 'reserved:world', 'reserved:host' …, or 'ip:<address>' */
	id: string;
	kind: 'workload' | 'reserved' | 'ip';
	namespace?: string;
	name: string;
	/** labels of the last pod seen for this workload */
	labels: string[];
}

/** An edge of the service map: source workload -> destination workload, port and protocol. */
export interface MapEdge {
	id: string;
	source: string;
	destination: string;
	port?: number;
	protocol: string;
	counts: Record<FlowVerdict, number>;
	dropReasons: Record<string, number>;
	/** 'namespace/name' of the policies that allowed (FORWARDED) or isolated (DROPPED, AUDIT) */
	policies: { allowedBy: string[]; isolatedBy: string[] };
	firstSeen: string;
	lastSeen: string;
	/** the edge's flows the ztunnel reported as carried over mutual TLS (absent: none) */
	mtls?: { flows: number };
}

/** GET /v1/service-map */
export interface ServiceMapView {
	nodes: MapNode[];
	edges: MapEdge[];
	/** edges forgotten because the map was full */
	evicted: number;
}

/** GET /v1/flows without follow (the relay's answer; a node agent's has no `nodes`) */
export interface FlowsResponse {
	flows: Flow[];
	/** the nodes whose flows are missing from the answer (not connected) */
	nodes?: NodeStatusView[];
}

/** GET /v1/nodes */
export interface NodesResponse {
	nodes: NodeStatusView[];
}

/** GET /v1/namespaces */
export interface NamespacesResponse {
	namespaces: string[];
}

/** A follow stream's line when a node changes state (the relay). */
export interface NodeEvent {
	event: 'node';
	node: string;
	state: NodeState;
	error?: string;
	time: string;
}

/** A follow stream's line after the server dropped lines its client read too slowly. */
export interface LostEvent {
	event: 'lost';
	lost: number;
	time: string;
	reason: string;
}

/** A follow stream's line on a quiet stream, so that proxies keep it open (the relay). */
export interface HeartbeatEvent {
	event: 'heartbeat';
	time: string;
}

/** One line of GET /v1/flows?follow=true (NDJSON): a flow, or an event. */
export type StreamLine = Flow | NodeEvent | LostEvent | HeartbeatEvent;
