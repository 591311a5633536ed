// The CNI part of a node agent, composed: endpoint store, plugin, server, conflist.
// app.ts builds one inside the agent; main.ts runs one on its own (tests, benchmarks,
// a node without the Kubernetes side).
import { Datapath } from '../bpf/datapath.js';
import { EndpointFlags, Identity } from '../bpf/layout.js';
import type { LocalEndpoint } from '../policy/controller.js';
import { ConflistOptions, buildConflist, installPlugin, writeConflist } from './conflist.js';
import { EndpointStore } from './endpoint-store.js';
import { ExecIpam, Ipam } from './ipam.js';
import { CniPlugin, PluginLogger } from './plugin.js';
import { CniServer } from './server.js';

export interface CniConfig {
	/** the forwarder's socket, e.g. /var/run/weir/cni.sock */
	socketPath: string;
	/** endpoint state file, e.g. /var/run/weir/cni-endpoints.json (with the pinned maps it survives a restart) */
	stateFile: string;
	/** node side network namespace (undefined: the agent's own) */
	hostNetns?: string;
	/** runtime's CNI conf dir; the conflist is written there once ready (undefined: not written) */
	confDir?: string;
	/** conflist options; without podCidr the agent learns it from its Node object first */
	conflist?: Omit<ConflistOptions, 'agentSocket' | 'podCidr'> & { podCidr?: string };
	/** runtime's CNI bin dir: weir-cni (pluginSource) is installed there before the conflist */
	binDir?: string;
	pluginSource?: string;
}

export const DEFAULT_CNI_CONFIG: Pick<CniConfig, 'socketPath' | 'stateFile'> = {
	socketPath: '/var/run/weir/cni.sock',
	stateFile: '/var/run/weir/cni-endpoints.json',
};

/** The fail-closed entry of a pod whose policy is not known yet (see docs/cni.md). */
export function failClosedEntry(ep: LocalEndpoint): { epId: number; identity: number; ifindex: number; flags: number } {
	return {
		epId: ep.epId,
		identity: Identity.Init,
		ifindex: ep.ifindex,
		flags: EndpointFlags.IngressIsolated | EndpointFlags.EgressIsolated,
	};
}

export class CniNode {
	private readonly ready = { value: false, why: 'starting' };

	private constructor(
		readonly config: CniConfig,
		readonly store: EndpointStore,
		readonly plugin: CniPlugin,
		readonly server: CniServer,
		private readonly log: PluginLogger,
	) {}

	static create(
		config: CniConfig,
		datapath: Datapath,
		admit: (ep: LocalEndpoint) => void,
		log: PluginLogger,
		opts: { ipam?: Ipam; store?: EndpointStore } = {},
	): CniNode {
		const store = opts.store ?? new EndpointStore(config.stateFile);
		let node: CniNode | undefined;
		const plugin = new CniPlugin({
			datapath,
			store,
			ipam: opts.ipam ?? new ExecIpam(),
			admit,
			notReady: () => (node && node.ready.value ? undefined : (node?.ready.why ?? 'starting')),
			...(config.hostNetns ? { hostNetns: config.hostNetns } : {}),
			log,
		});
		node = new CniNode(config, store, plugin, new CniServer(config.socketPath, plugin, log), log);
		return node;
	}

	/** Removes stale endpoints, serves the socket, then (ready) writes the conflist. */
	async start(): Promise<void> {
		const r = await this.plugin.reconcile();
		this.log.info({ kept: r.kept, removed: r.removed }, 'CNI endpoints reconciled');
		await this.server.start();
		this.ready.value = true;
		this.ready.why = '';
		if (this.config.conflist?.podCidr) this.writeConflist(this.config.conflist.podCidr);
	}

	/** Whether a conflist is wanted but still waits for the node's PodCIDR. */
	get needsPodCidr(): boolean {
		return !!this.config.confDir && !!this.config.conflist && !this.config.conflist.podCidr;
	}

	/**
	 * Installs weir-cni (when a bin dir is configured) and then writes the conflist:
	 * the runtime starts calling Weir only once both are in place and the server is up.
	 */
	writeConflist(podCidr: string): void {
		const { confDir, conflist, binDir, pluginSource } = this.config;
		if (!confDir || !conflist) return;
		if (binDir && pluginSource) {
			const dest = installPlugin(pluginSource, binDir);
			this.log.info({ path: dest }, 'weir-cni installed');
		}
		const path = writeConflist(confDir, buildConflist({ ...conflist, podCidr, agentSocket: this.config.socketPath }));
		this.log.info({ path, podCidr }, 'CNI configuration written');
	}

	setNotReady(why: string): void {
		this.ready.value = false;
		this.ready.why = why;
	}

	async stop(): Promise<void> {
		this.setNotReady('stopping');
		await this.server.stop();
	}
}
