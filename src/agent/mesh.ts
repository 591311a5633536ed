// Mesh opt-in on this node (docs/ztunnel.md, "Opting in"). The policy compiler reads
// every pod's membership (src/shared/mesh.ts) and the policy controller writes its two
// flags with the rest: WEIR_EP_MESHED on meshed local endpoints, WEIR_IPCACHE_F_MESHED
// on every meshed pod's address. What is left for the node is the capture's routing
// (src/kernel/capture.ts), which delivers locally the packets the pod programs hand to
// the ztunnel: installed at start when the mesh is on, before any compile can flag a
// pod; removed when it is off, once an applied compile has cleared the flags.
// The socket load balancer's meshed-source switch is left alone: a meshed pod's
// ClusterIP connects are translated like any pod's, so that capture, which is decided
// on the destination address, sees the backend (docs/services.md, "Meshed sources").

export interface MeshLogger {
	info(obj: object, msg: string): void;
	warn(obj: object, msg: string): void;
	error(obj: object, msg: string): void;
}

/** The capture's routing (src/kernel/capture.ts), as the agent needs it. */
export interface CaptureRoutingOps {
	install(): Promise<boolean>;
	remove(): Promise<boolean>;
}

/**
 * The node's mesh: on when the agent's `mesh` option is and the pod programs capture
 * (DatapathConfig.capture), and the capture's routing is in place.
 */
export class NodeMesh {
	/** the routing as last installed or removed; 'failed': installing it failed, no pod is meshed */
	routing: 'unknown' | 'installed' | 'removed' | 'failed' = 'unknown';
	lastError: string | undefined;
	private removing: Promise<void> | undefined;

	constructor(
		/** the agent's option and the datapath's capture, both on */
		readonly wanted: boolean,
		private readonly ops: CaptureRoutingOps,
		private readonly log: MeshLogger,
	) {}

	/** Whether compiles mesh pods now. */
	get active(): boolean {
		return this.wanted && this.routing === 'installed';
	}

	/** At start, before any compile: installs the routing when the mesh is wanted (idempotent). */
	async start(): Promise<void> {
		if (!this.wanted) return;
		try {
			const added = await this.ops.install();
			this.routing = 'installed';
			this.log.info({ added }, 'capture routing in place: meshed pods are captured by the ztunnel');
		} catch (err) {
			this.routing = 'failed';
			this.lastError = `capture routing: ${(err as Error).message}`;
			this.log.error(
				{ err: (err as Error).message, code: (err as { code?: string }).code },
				'the capture routing could not be installed (ip rule/route in the node namespace: the agent needs CAP_NET_ADMIN there): no pod is meshed on this node',
			);
		}
	}

	/**
	 * After a compile was applied: with the mesh off (or its routing failed), removes the
	 * routing once. The flags that steered packets to it are cleared by then; a previous
	 * agent's flags may still be in the maps before the first compile.
	 */
	applied(): void {
		if (this.active || this.routing === 'removed' || this.removing) return;
		this.removing = this.ops.remove().then(
			(removed) => {
				if (this.routing !== 'failed') this.routing = 'removed';
				if (removed) this.log.info({}, 'mesh off on this node: capture routing removed');
			},
			(err: Error) => {
				this.lastError = `capture routing: ${err.message}`;
				this.log.warn({ err: err.message }, 'the capture routing could not be removed; the next policy run retries');
				this.removing = undefined;
			},
		);
	}

	/** Resolves once a removal in flight is done (tests, stop). */
	async settled(): Promise<void> {
		await this.removing;
	}
}
