// The agent's Prometheus metrics (prom-client, on its own registry).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { Datapath } from '../kernel/datapath.js';
import { Flow } from '../observe/flow.js';
import { Compiled } from '../policy/compiler.js';
import { ApplyStats } from '../policy/reconcile.js';

export class AgentMetrics {
	readonly registry = new Registry();
	private readonly flows: Counter<'verdict' | 'reason' | 'direction'>;
	private readonly compileSeconds: Histogram;
	private readonly mapChanges: Counter<'map' | 'op'>;
	private readonly policies: Gauge;
	private readonly endpoints: Gauge;
	private readonly meshRecords: Counter<'result'>;

	constructor(datapath: Datapath) {
		const registers = [this.registry];
		this.flows = new Counter({
			name: 'weir_flows_total',
			help: "Flows seen by the datapath (new connections and drops) and the node's ztunnel (its connections' events), by verdict and drop reason",
			labelNames: ['verdict', 'reason', 'direction'],
			registers,
		});
		this.compileSeconds = new Histogram({
			name: 'weir_policy_compile_seconds',
			help: 'Time to compile NetworkPolicies and apply the difference to the datapath',
			buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
			registers,
		});
		this.mapChanges = new Counter({
			name: 'weir_policy_map_changes_total',
			help: 'Datapath map entries written or removed by the policy controller',
			labelNames: ['map', 'op'],
			registers,
		});
		this.policies = new Gauge({ name: 'weir_policy_rules', help: 'NetworkPolicy rules compiled', registers });
		this.endpoints = new Gauge({ name: 'weir_endpoints', help: 'Local endpoints under policy', registers });
		this.meshRecords = new Counter({
			name: 'weir_mesh_flow_records_total',
			help: "Connection records read from the node ztunnel's flow socket: accepted (each is a flow) or malformed (skipped)",
			labelNames: ['result'],
			registers,
		});
		new Gauge({
			name: 'weir_map_entries',
			help: 'Entries in the datapath maps',
			labelNames: ['map'],
			registers,
			collect() {
				this.set({ map: 'ipcache' }, datapath.ipcacheEntries().length);
				this.set({ map: 'endpoints' }, datapath.endpointEntries().length);
				this.set({ map: 'policy' }, datapath.policyEntryCount());
				this.set({ map: 'conntrack' }, datapath.conntrack().length);
				this.set({ map: 'mtls_ports' }, datapath.mtlsPortEntries().length);
			},
		});
		new Gauge({
			name: 'weir_datapath_packets',
			help: 'Packets counted by the datapath programs, by reason (OK = forwarded) and direction',
			labelNames: ['reason', 'direction'],
			registers,
			collect() {
				const m = datapath.readMetrics();
				for (const s of m.samples) this.set({ reason: s.reasonName, direction: s.direction }, Number(s.packets));
			},
		});
		new Gauge({
			name: 'weir_datapath_events_lost',
			help: 'Datapath events lost because the ring buffer was full',
			registers,
			collect() {
				this.set(Number(datapath.readMetrics().eventsLost));
			},
		});
	}

	flow(f: Flow): void {
		this.flows.inc({ verdict: f.verdict, reason: f.dropReason ?? '', direction: f.direction });
	}

	meshRecord(result: 'accepted' | 'malformed'): void {
		this.meshRecords.inc({ result });
	}

	compiled(seconds: number, stats: ApplyStats, c: Compiled): void {
		this.compileSeconds.observe(seconds);
		this.mapChanges.inc({ map: 'policy', op: 'put' }, stats.policyAdded);
		this.mapChanges.inc({ map: 'policy', op: 'delete' }, stats.policyRemoved);
		this.mapChanges.inc({ map: 'ipcache', op: 'put' }, stats.ipcacheSet);
		this.mapChanges.inc({ map: 'ipcache', op: 'delete' }, stats.ipcacheRemoved);
		this.mapChanges.inc({ map: 'endpoints', op: 'put' }, stats.endpointsSet);
		this.mapChanges.inc({ map: 'endpoints', op: 'delete' }, stats.endpointsRemoved);
		this.mapChanges.inc({ map: 'mtls_ports', op: 'put' }, stats.mtlsPortsSet);
		this.mapChanges.inc({ map: 'mtls_ports', op: 'delete' }, stats.mtlsPortsRemoved);
		this.policies.set(c.rules.size);
		this.endpoints.set(c.endpoints.size);
	}
}
