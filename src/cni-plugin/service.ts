// The CNI service of a node agent, composed: endpoint store, plugin, server, conflist.
// The agent builds one (src/agent/app.ts); hack/lab/cni-server.ts runs one on its own
// (runtime tests, the CNI benchmark, a node without the Kubernetes side).
import { Datapath } from '../kernel/datapath.js';
import { EndpointFlags, Identity } from '../kernel/layout.js';
import type { LocalEndpoint } from '../shared/endpoint.js';
import { ConflistOptions, buildConflist, writeConflist } from './conflist.js';
import { installExecutable } from '../shared/install.js';
import { DEFAULTS } from '../shared/defaults.js';
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
	socketPath: DEFAULTS.cniSocket,
	stateFile: DEFAULTS.cniStateFile,
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

/** The executable the runtime calls: it forwards each request to this service's socket. */
export const WEIR_CNI = DEFAULTS.cniExecutable;

export class CniService {
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
	): CniService {
		const store = opts.store ?? new EndpointStore(config.stateFile);
		// The plugin asks the service whether it is ready; the service is built from the plugin.
		// eslint-disable-next-line prefer-const
		let service: CniService | undefined;
		const plugin = new CniPlugin({
			datapath,
			store,
			ipam: opts.ipam ?? new ExecIpam(),
			admit,
			notReady: () => (service && service.ready.value ? undefined : (service?.ready.why ?? 'starting')),
			...(config.hostNetns ? { hostNetns: config.hostNetns } : {}),
			log,
		});
		service = new CniService(config, store, plugin, new CniServer(config.socketPath, plugin, log), log);
		return service;
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
			const dest = installExecutable(pluginSource, binDir, WEIR_CNI);
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
