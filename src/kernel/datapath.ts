// The node's datapath: the pod tc programs and their pinned maps, typed.
// Everything outside src/bpf/ talks to the kernel through this class.
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { isBpffs } from './bpffs.js';
import { dirname, join } from 'node:path';
import { buildPath } from '../shared/package.js';
import { ipv4ToInt, isIpv4 } from '../shared/ipv4.js';
import {
	DatapathRecord,
	EndpointInfo,
	decodeCt4Key,
	decodeCtEntry,
	decodeEndpointInfo,
	decodeEndpointKey,
	decodeRecord,
	decodeIpcacheKey,
	decodeIpcacheValue,
	decodeMtlsPort,
	endpointInfo,
	endpointKey,
	ipcacheKey,
	ipcacheValue,
	Ct4Key,
	CtEntry,
	IpcacheValue,
	MtlsPortEntry,
	mtlsPortKey,
	mtlsPortValue,
} from './codecs.js';
import { Dir, MapName, METRICS_EVENTS_LOST, REASON_MAX, Structs, dropReasonName } from './layout.js';
import { NativeError, NativeLink, NativeMap, NativeObject, NativeRingBuffer, TcDirection, native } from './addon.js';

/** Load-time configuration of the pod programs (rodata, fixed for the object's life). */
export interface DatapathConfig {
	/** traffic from this node to its pods passes whatever the policy (kubelet probes) */
	allowHost: boolean;
	/** policy denials are reported as AUDIT and let through */
	audit: boolean;
	/** a policy-verdict event for every new allowed connection */
	verdictEvents: boolean;
	ctTcpLifetimeSec: number;
	ctSynLifetimeSec: number;
	ctCloseLifetimeSec: number;
	ctOtherLifetimeSec: number;
	/** transparent capture of meshed pods' TCP into the ztunnel (src/kernel/capture.ts, docs/ztunnel.md) */
	capture: boolean;
	/** the ztunnel's outbound listener: port, and address ('0.0.0.0' = a wildcard listener) */
	proxyPort: number;
	proxyAddress: string;
	/** mark (under captureMask) the programs set on captured packets; the capture rule matches it */
	captureMark: number;
	captureMask: number;
	/** SO_MARK of the ztunnel's own sockets (never captured, never matched by the capture rule) */
	ztunnelMark: number;
}

export const DEFAULT_CONFIG: DatapathConfig = {
	allowHost: true,
	audit: false,
	verdictEvents: true,
	ctTcpLifetimeSec: 21600,
	ctSynLifetimeSec: 60,
	ctCloseLifetimeSec: 10,
	ctOtherLifetimeSec: 60,
	capture: true,
	proxyPort: 15001,
	proxyAddress: '0.0.0.0',
	captureMark: 0x0e00,
	captureMask: 0x0f00,
	ztunnelMark: 0x0539,
};

export interface DatapathOptions {
	/** bpffs directory owned by this node's datapath, e.g. /sys/fs/bpf/weir/node-1 */
	pinRoot: string;
	/** compiled object (default build/bpf/pod_tc.bpf.o of this checkout) */
	objectPath?: string;
	config?: Partial<DatapathConfig>;
}

/** An attachment of the pod programs to one host-side veth. */
export interface Attachment {
	ifindex: number;
	ingress: NativeLink;
	egress: NativeLink;
}

export interface MetricsSample {
	reason: number;
	reasonName: string;
	direction: 'ingress' | 'egress';
	packets: bigint;
	bytes: bigint;
}

export class DatapathError extends Error {
	constructor(
		readonly code: string,
		message: string,
		options?: { cause?: unknown },
	) {
		super(message, options);
		this.name = 'DatapathError';
	}
}

function defaultObjectPath(): string {
	return buildPath('bpf/pod_tc.bpf.o');
}

function u8(v: boolean): Buffer {
	return Buffer.from([v ? 1 : 0]);
}

function u16(v: number): Buffer {
	const b = Buffer.alloc(2);
	b.writeUInt16LE(v);
	return b;
}

/** An IPv4 address as the 4 bytes of a network-order __u32. */
function ipv4Be(ip: string): Buffer {
	if (!isIpv4(ip)) throw new DatapathError('WEIR_ERR_CONFIG', `proxyAddress must be an IPv4 address, got '${ip}'`);
	const b = Buffer.alloc(4);
	b.writeUInt32BE(ipv4ToInt(ip));
	return b;
}

function u32(v: number): Buffer {
	const b = Buffer.alloc(4);
	b.writeUInt32LE(v >>> 0);
	return b;
}

/** Throws unless `dir` (or its nearest existing parent) is on a bpffs mount. */
export function assertOnBpffs(dir: string): void {
	let probe = dir;
	while (!existsSync(probe)) probe = dirname(probe);
	if (!isBpffs(probe)) {
		throw new DatapathError('WEIR_ERR_NOT_BPFFS', `${dir} is not on a bpf filesystem: mount one with 'mount -t bpf bpf /sys/fs/bpf'`);
	}
}

export class Datapath {
	private readonly attachments = new Map<number, Attachment>();
	private readonly rings = new Set<NativeRingBuffer>();
	private closed = false;

	private constructor(
		readonly pinRoot: string,
		readonly config: DatapathConfig,
		private readonly obj: NativeObject,
		private readonly ipcache: NativeMap,
		private readonly endpoints: NativeMap,
		private readonly policy: NativeMap,
		private readonly ct4: NativeMap,
		private readonly metrics: NativeMap,
		private readonly events: NativeMap,
		private readonly mtlsPorts: NativeMap,
	) {}

	/**
	 * Loads the pod programs. Maps already pinned under `pinRoot` are reused with their
	 * contents, so a restarted agent keeps enforcing exactly what the previous one did.
	 */
	static async open(opts: DatapathOptions): Promise<Datapath> {
		const config = { ...DEFAULT_CONFIG, ...opts.config };
		// The configuration is checked (encoded) before anything is made in bpffs.
		const rodata = {
			weir_cfg_allow_host: u8(config.allowHost),
			weir_cfg_audit: u8(config.audit),
			weir_cfg_verdict_events: u8(config.verdictEvents),
			weir_cfg_ct_tcp_lifetime: u32(config.ctTcpLifetimeSec),
			weir_cfg_ct_syn_lifetime: u32(config.ctSynLifetimeSec),
			weir_cfg_ct_close_lifetime: u32(config.ctCloseLifetimeSec),
			weir_cfg_ct_other_lifetime: u32(config.ctOtherLifetimeSec),
			weir_cfg_capture: u8(config.capture),
			weir_cfg_proxy_port: u16(config.proxyPort),
			weir_cfg_proxy_addr: ipv4Be(config.proxyAddress),
			weir_cfg_capture_mark: u32(config.captureMark),
			weir_cfg_capture_mask: u32(config.captureMask),
			weir_cfg_ztunnel_mark: u32(config.ztunnelMark),
		};
		assertOnBpffs(opts.pinRoot);
		mkdirSync(opts.pinRoot, { recursive: true });
		const obj = native().openObject(opts.objectPath ?? defaultObjectPath(), { pinRoot: opts.pinRoot, rodata });
		try {
			await obj.load();
		} catch (err) {
			obj.close();
			throw err;
		}
		return new Datapath(
			opts.pinRoot,
			config,
			obj,
			obj.map(MapName.ipcache),
			obj.map(MapName.endpoints),
			obj.map(MapName.policy),
			obj.map(MapName.ct4),
			obj.map(MapName.metrics),
			obj.map(MapName.events),
			obj.map(MapName.mtlsPorts),
		);
	}

	private linkPath(ifindex: number, dir: TcDirection): string {
		return join(this.pinRoot, 'links', `${ifindex}-${dir}`);
	}

	/**
	 * Attaches the pod programs to a pod's host-side veth (tcx links, pinned so they
	 * outlive this process). If pinned links already exist for the interface, their
	 * programs are swapped atomically instead: traffic never sees a gap.
	 */
	attach(ifindex: number, opts: { legacy?: boolean; netns?: string } = {}): Attachment {
		this.assertOpen();
		const n = native();
		mkdirSync(join(this.pinRoot, 'links'), { recursive: true });
		const from = this.obj.program('weir_from_pod');
		const to = this.obj.program('weir_to_pod');
		const made: NativeLink[] = [];
		const one = (dir: TcDirection, prog: typeof from): NativeLink => {
			const path = this.linkPath(ifindex, dir);
			if (existsSync(path)) {
				const link = n.openPinnedLink(path);
				link.update(prog);
				return link;
			}
			const link = prog.attachTc(ifindex, dir, opts);
			made.push(link);
			if (link.kind === 'tcx') link.pin(path);
			return link;
		};
		try {
			// tc ingress of the host veth = what the pod sends; tc egress = what it receives.
			const ingress = one('ingress', from);
			const egress = one('egress', to);
			const a = { ifindex, ingress, egress };
			this.attachments.set(ifindex, a);
			return a;
		} catch (err) {
			this.undoAttach(ifindex, made);
			throw err;
		}
	}

	/**
	 * attach() for a fresh interface, off the event loop: both hooks are attached
	 * concurrently on the libuv pool (a tcx attach waits for RCU grace periods in the
	 * kernel). Interfaces with pinned links take the synchronous update path.
	 */
	async attachAsync(ifindex: number, opts: { legacy?: boolean; netns?: string } = {}): Promise<Attachment> {
		this.assertOpen();
		if (['ingress', 'egress'].some((dir) => existsSync(this.linkPath(ifindex, dir as TcDirection)))) return this.attach(ifindex, opts);
		mkdirSync(join(this.pinRoot, 'links'), { recursive: true });
		const from = this.obj.program('weir_from_pod');
		const to = this.obj.program('weir_to_pod');
		// tc ingress of the host veth = what the pod sends; tc egress = what it receives.
		const settled = await Promise.allSettled([from.attachTcAsync(ifindex, 'ingress', opts), to.attachTcAsync(ifindex, 'egress', opts)]);
		const made = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
		try {
			for (const r of settled) if (r.status === 'rejected') throw r.reason;
			const [ingress, egress] = made as [NativeLink, NativeLink];
			if (ingress.kind === 'tcx') ingress.pin(this.linkPath(ifindex, 'ingress'));
			if (egress.kind === 'tcx') egress.pin(this.linkPath(ifindex, 'egress'));
			const a = { ifindex, ingress, egress };
			this.attachments.set(ifindex, a);
			return a;
		} catch (err) {
			this.undoAttach(ifindex, made);
			throw err;
		}
	}

	/** Rolls back a failed attach: what it attached, and any pins it made. */
	private undoAttach(ifindex: number, made: readonly NativeLink[]): void {
		for (const l of made) l.detach();
		for (const dir of ['ingress', 'egress'] as const) rmSync(this.linkPath(ifindex, dir), { force: true });
	}

	/** Detaches from an interface and removes the pins. Missing attachments are fine. */
	detach(ifindex: number): void {
		const a = this.attachments.get(ifindex);
		const n = native();
		for (const dir of ['ingress', 'egress'] as const) {
			const path = this.linkPath(ifindex, dir);
			const link = a ? a[dir] : existsSync(path) ? n.openPinnedLink(path) : undefined;
			try {
				link?.detach();
			} finally {
				rmSync(path, { force: true });
			}
		}
		this.attachments.delete(ifindex);
	}

	/**
	 * Whether this datapath's current programs are attached at both hooks of an
	 * interface (tcx query, or legacy clsact filters). `netns` is where the ifindex lives.
	 */
	isAttached(ifindex: number, netns?: string): boolean {
		this.assertOpen();
		const n = native();
		const want = { ingress: this.obj.program('weir_from_pod').id, egress: this.obj.program('weir_to_pod').id };
		return (['ingress', 'egress'] as const).every((dir) => {
			const ids = [...n.tcxQuery(ifindex, dir, netns), ...n.tcLegacyQuery(ifindex, dir, netns)];
			return ids.includes(want[dir]);
		});
	}

	/**
	 * Forgets an attachment whose interface is gone (or being deleted): closes our link
	 * handles and removes the pins, without a detach call. The kernel detached the tcx
	 * links with the device; the last reference, the pin, frees them.
	 */
	release(ifindex: number): void {
		const a = this.attachments.get(ifindex);
		if (a) {
			a.ingress.close();
			a.egress.close();
			this.attachments.delete(ifindex);
		}
		for (const dir of ['ingress', 'egress'] as const) rmSync(this.linkPath(ifindex, dir), { force: true });
	}

	/** ifindexes with pinned links under this datapath's pin root. */
	pinnedAttachments(): number[] {
		const dir = join(this.pinRoot, 'links');
		if (!existsSync(dir)) return [];
		return [...new Set(readdirSync(dir).map((f) => Number(f.split('-')[0])))].filter(Number.isInteger);
	}

	/** Maps a prefix to an identity; `flags` are IpcacheFlags (Meshed: the ztunnel captures a meshed pod's TCP to it). */
	setIpcache(cidr: string, identity: number, flags = 0): void {
		this.ipcache.update(ipcacheKey(cidr), ipcacheValue(identity, flags));
	}

	deleteIpcache(cidr: string): boolean {
		return this.ipcache.delete(ipcacheKey(cidr));
	}

	ipcacheEntries(): Array<{ cidr: string } & IpcacheValue> {
		return this.ipcache.entries().map(([k, v]) => ({ cidr: decodeIpcacheKey(k), ...decodeIpcacheValue(v) }));
	}

	setEndpoint(ip: string, info: EndpointInfo): void {
		this.endpoints.update(endpointKey(ip), endpointInfo(info));
	}

	deleteEndpoint(ip: string): boolean {
		return this.endpoints.delete(endpointKey(ip));
	}

	/** One address's endpoint entry (one map lookup), if it is a registered endpoint. */
	endpoint(ip: string): EndpointInfo | undefined {
		const v = this.endpoints.lookup(endpointKey(ip));
		return v ? decodeEndpointInfo(v) : undefined;
	}

	endpointEntries(): Array<{ ip: string } & EndpointInfo> {
		return this.endpoints.entries().map(([k, v]) => ({ ip: decodeEndpointKey(k), ...decodeEndpointInfo(v) }));
	}

	/** The mTLS mode (MtlsPortMode) of one port of an endpoint, overriding its MtlsStrict flag there (read with EndpointFlags.MtlsPorts). */
	setMtlsPort(epId: number, port: number, mode: number): void {
		this.mtlsPorts.update(mtlsPortKey(epId, port), mtlsPortValue(mode));
	}

	deleteMtlsPort(epId: number, port: number): boolean {
		return this.mtlsPorts.delete(mtlsPortKey(epId, port));
	}

	mtlsPortEntries(): MtlsPortEntry[] {
		return this.mtlsPorts.entries().map(([k, v]) => decodeMtlsPort(k, v));
	}

	/** Raw trie entries (key, value), for the reconciler's diff. */
	policyRaw(): Array<[Buffer, Buffer]> {
		return this.policy.entries();
	}

	putPolicyRaw(key: Buffer, value: Buffer): void {
		this.policy.update(key, value);
	}

	deletePolicyRaw(key: Buffer): boolean {
		return this.policy.delete(key);
	}

	policyEntryCount(): number {
		return this.policy.keys().length;
	}

	conntrack(): Array<{ key: Ct4Key; entry: CtEntry }> {
		return this.ct4.entries().map(([k, v]) => ({ key: decodeCt4Key(k), entry: decodeCtEntry(v) }));
	}

	/**
	 * Removes expired conntrack entries. Entries carry CLOCK_MONOTONIC_COARSE deadlines;
	 * `nowNs` is CLOCK_MONOTONIC (process.hrtime.bigint()), at most one tick ahead of the
	 * coarse clock, so an entry may go one tick before its deadline: immaterial next to
	 * lifetimes of seconds. Returns how many were removed.
	 */
	gcConntrack(nowNs: bigint = process.hrtime.bigint()): number {
		const stale: Buffer[] = [];
		for (const [k, v] of this.ct4.entries()) {
			if (decodeCtEntry(v).expiresNs < nowNs) stale.push(k);
		}
		if (stale.length === 0) return 0;
		return this.ct4.deleteBatch(Buffer.concat(stale));
	}

	/** Per-reason, per-direction counters summed over CPUs (only non-zero ones). */
	readMetrics(): { samples: MetricsSample[]; eventsLost: bigint } {
		const valueSize = Structs.weir_metrics_value.size;
		const sum = (idx: number): { packets: bigint; bytes: bigint } => {
			const raw = this.metrics.lookup(u32(idx));
			let packets = 0n;
			let bytes = 0n;
			if (raw) {
				for (let off = 0; off + valueSize <= raw.length; off += valueSize) {
					packets += raw.readBigUInt64LE(off);
					bytes += raw.readBigUInt64LE(off + 8);
				}
			}
			return { packets, bytes };
		};
		const samples: MetricsSample[] = [];
		for (let r = 0; r < REASON_MAX; r++) {
			for (const dir of [Dir.Ingress, Dir.Egress]) {
				const s = sum((r << 1) | dir);
				if (s.packets === 0n) continue;
				samples.push({
					reason: -r,
					reasonName: dropReasonName(r === 0 ? 0 : -r),
					direction: dir === Dir.Egress ? 'egress' : 'ingress',
					...s,
				});
			}
		}
		return { samples, eventsLost: sum(METRICS_EVENTS_LOST).packets };
	}

	/**
	 * Streams decoded ring-buffer records until the returned function is called: the
	 * pod programs' packet events and the socket load balancer's refusals (the ring is
	 * shared by everything pinned under this root); a record of a type this build does
	 * not know is skipped. If
	 * the native poller dies, the stream closes and `onError` gets one DatapathError
	 * (WEIR_ERR_EVENTS_STOPPED, cause: the NativeError with errno and op); without
	 * `onError` it becomes a process warning.
	 */
	subscribe(onEvent: (ev: DatapathRecord) => void, onError?: (err: DatapathError) => void): () => void {
		this.assertOpen();
		const stop = (): void => {
			ring.close();
			this.rings.delete(ring);
		};
		const ring = native().openRingBuffer(
			this.events,
			(records) => {
				for (const r of records) {
					const ev = decodeRecord(r);
					if (ev) onEvent(ev);
				}
			},
			(cause) => {
				stop();
				const err = new DatapathError(
					'WEIR_ERR_EVENTS_STOPPED',
					`datapath events stopped: ${cause.message}; flows and drops go unobserved until the agent restarts (enforcement continues)`,
					{ cause },
				);
				if (onError) onError(err);
				else process.emitWarning(err);
			},
		);
		this.rings.add(ring);
		return stop;
	}

	/** The loaded programs (for BPF_PROG_TEST_RUN and benchmarks). */
	program(name: 'weir_from_pod' | 'weir_to_pod') {
		return this.obj.program(name);
	}

	/**
	 * Releases this process's handles. Pinned maps and links stay: the datapath keeps
	 * enforcing with no process behind it.
	 */
	close(): void {
		if (this.closed) return;
		this.closed = true;
		for (const r of this.rings) r.close();
		this.rings.clear();
		for (const a of this.attachments.values()) {
			a.ingress.close();
			a.egress.close();
		}
		this.attachments.clear();
		this.obj.close();
	}

	/** Uninstall: detaches every attachment (this process's and every pinned one) and removes the pin root. */
	destroy(): void {
		for (const ifindex of this.attachments.keys()) {
			try {
				this.detach(ifindex);
			} catch (err) {
				if (!isGone(err)) throw err;
			}
		}
		this.close();
		const left = uninstallPins(this.pinRoot);
		if (left.warnings.length) throw new DatapathError('WEIR_ERR_UNINSTALL', left.warnings.join('; '));
	}

	private assertOpen(): void {
		if (this.closed) throw new DatapathError('WEIR_ERR_CLOSED', 'datapath handle is closed');
	}
}

/**
 * Where the socket load balancer (service-lb.ts) pins its cgroup links:
 * <pinRoot>/cgroup-links/<cgroup path, URI-encoded>/<hook>.
 */
export const CGROUP_LINKS_DIR = 'cgroup-links';
/** Its hooks' pin names, in the order they are detached (translating hooks before the reverse ones). */
export const CGROUP_HOOK_PINS = ['connect4', 'sendmsg4', 'recvmsg4', 'getpeername4'] as const;
export type CgroupHookPin = (typeof CGROUP_HOOK_PINS)[number];

/** The pinned cgroup links under a pin root, in detach order, relative to it. */
export function pinnedCgroupLinks(pinRoot: string): string[] {
	const dir = join(pinRoot, CGROUP_LINKS_DIR);
	if (!existsSync(dir)) return [];
	const rank = (f: string): number => {
		const i = (CGROUP_HOOK_PINS as readonly string[]).indexOf(f);
		return i < 0 ? CGROUP_HOOK_PINS.length : i;
	};
	return readdirSync(dir)
		.sort()
		.flatMap((cg) =>
			readdirSync(join(dir, cg))
				.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
				.map((f) => join(CGROUP_LINKS_DIR, cg, f)),
		);
}

/** Removes a pin root and everything under it (maps, links). Idempotent. */
export function removePinRoot(pinRoot: string): void {
	rmSync(pinRoot, { recursive: true, force: true });
}

/** A link or interface that is already gone: nothing left to detach. */
function isGone(err: unknown): boolean {
	const code = (err as NativeError).code;
	return code === 'ENOENT' || code === 'ENODEV';
}

/** Detaches the program behind a pinned link (tcx or cgroup), without loading the datapath. */
export function detachPinnedLink(path: string): void {
	native().openPinnedLink(path).detach(); // detach also closes our fd
}

/**
 * Uninstall with no datapath loaded (the node's cleanup, or after a crash): detaches
 * the program behind every pinned link under `pinRoot` (the pod programs' tcx links,
 * the socket load balancer's cgroup links), then removes the pin root.
 * A link whose interface is gone is not a problem; anything else is a warning, and
 * the pins are removed all the same. `detach` is the kernel call (replaceable in tests).
 */
export function uninstallPins(pinRoot: string, detach: (path: string) => void = detachPinnedLink): { detached: string[]; warnings: string[] } {
	const out = { detached: [] as string[], warnings: [] as string[] };
	const links = join(pinRoot, 'links');
	const pinned = [...(existsSync(links) ? readdirSync(links).sort() : []).map((f) => join('links', f)), ...pinnedCgroupLinks(pinRoot)];
	for (const f of pinned) {
		try {
			detach(join(pinRoot, f));
			out.detached.push(f);
		} catch (err) {
			if (!isGone(err)) out.warnings.push(`detach ${f}: ${(err as Error).message}`);
		}
	}
	removePinRoot(pinRoot);
	return out;
}
