// Socket-level load balancing of ClusterIP Services (native/bpf/sock_lb.bpf.c): the
// cgroup programs, their pinned maps and pinned cgroup links, typed. The Services
// controller writes frontends and backends through this class; flows ask it which
// Service a pod addressed.
import { existsSync, mkdirSync, readdirSync, realpathSync, rmdirSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { buildPath } from '../shared/package.js';
import { isIpv4 } from '../shared/ipv4.js';
import { IPPROTO, decodeLb4Addressed, decodeLb4Key, decodeLb4Service, lb4AddressedKey, lb4Key, lb4Master, lb4Slot } from './codecs.js';
import { LB_MAX_BACKENDS, LbFlags, LbSourceFlags, MapName, decode, encode } from './layout.js';
import { CGROUP_LINKS_DIR, CgroupHookPin, assertOnBpffs, pinnedCgroupLinks } from './datapath.js';
import { NativeError, NativeLink, NativeMap, NativeObject, native } from './addon.js';

export type LbProtocol = 'TCP' | 'UDP';

export interface Frontend {
	vip: string;
	port: number;
	protocol: LbProtocol;
}

export interface Backend {
	ip: string;
	port: number;
}

export interface ServiceEntry {
	/** the Service's id, 1..65535 (flows name the Service by it) */
	id: number;
	frontend: Frontend;
	/** at most LB_MAX_BACKENDS; none: connects to the frontend are refused (ECONNREFUSED) */
	backends: readonly Backend[];
	/** sessionAffinity ClientIP timeout in seconds (0: no affinity), at most 86400 */
	affinitySec: number;
}

/** Load-time configuration (rodata and map sizes, fixed for the object's life). */
export interface SocketLbConfig {
	/** translate UDP (sendmsg4/recvmsg4, connected UDP) as well as TCP */
	udp: boolean;
	/** TCP connects record a reverse entry, so that getpeername() reports the ClusterIP */
	tcpReverse: boolean;
	/** record which Service each translation went through (addressedService(), flows) */
	flowRecords: boolean;
	/**
	 * a connect refused for want of a backend is reported on the events ring at most
	 * once per (client netns, frontend) per this many ms, the refusals in between
	 * counted (the next report carries their number); 0: no reports, the counter only
	 */
	refuseIntervalMs: number;
	/** max entries of each map; a pinned map of another size is refused (WEIR_ERR_LB_MAP_SIZE) */
	servicesMaxEntries: number;
	reverseMaxEntries: number;
	affinityMaxEntries: number;
	addressedMaxEntries: number;
	refusedMaxEntries: number;
	sourcesMaxEntries: number;
}

export const DEFAULT_LB_CONFIG: SocketLbConfig = {
	udp: true,
	tcpReverse: true,
	flowRecords: true,
	refuseIntervalMs: 1000,
	servicesMaxEntries: 65536,
	reverseMaxEntries: 131072,
	affinityMaxEntries: 65536,
	addressedMaxEntries: 131072,
	refusedMaxEntries: 16384,
	sourcesMaxEntries: 16384,
};

export interface SocketLbOptions {
	/** bpffs directory of this node's datapath (the maps are pinned there by name) */
	pinRoot: string;
	/** compiled object (default build/bpf/sock_lb.bpf.o of this checkout) */
	objectPath?: string;
	/** cgroup v2 directory to attach to; none: load and pin only (tests, restarts) */
	cgroupPath?: string;
	config?: Partial<SocketLbConfig>;
}

export class SocketLbError extends Error {
	constructor(
		readonly code: string,
		message: string,
		options?: { cause?: unknown },
	) {
		super(message, options);
		this.name = 'SocketLbError';
	}
}

/** The hooks, in attach order: the reverse hooks first, so no translated socket exists without them. */
const HOOKS: ReadonlyArray<{ pin: CgroupHookPin; program: string; attachType: string }> = [
	{ pin: 'getpeername4', program: 'weir_sock_getpeername4', attachType: 'cgroup_inet4_getpeername' },
	{ pin: 'recvmsg4', program: 'weir_sock_recvmsg4', attachType: 'cgroup_udp4_recvmsg' },
	{ pin: 'sendmsg4', program: 'weir_sock_sendmsg4', attachType: 'cgroup_udp4_sendmsg' },
	{ pin: 'connect4', program: 'weir_sock_connect4', attachType: 'cgroup_inet4_connect' },
];

const CGROUP2_SUPER_MAGIC = 0x63677270;
const MAX_AFFINITY_SEC = 86400;
const PROTO: Record<LbProtocol, number> = { TCP: IPPROTO.TCP, UDP: IPPROTO.UDP };

function u8(v: boolean): Buffer {
	return Buffer.from([v ? 1 : 0]);
}

function u32(v: number): Buffer {
	const b = Buffer.alloc(4);
	b.writeUInt32LE(v >>> 0);
	return b;
}

function u64(v: bigint): Buffer {
	const b = Buffer.alloc(8);
	b.writeBigUInt64LE(v);
	return b;
}

/** The longest refuse interval: an hour (the programs multiply it into ns). */
const MAX_REFUSE_INTERVAL_MS = 3_600_000;

function bad(code: string, message: string): never {
	throw new SocketLbError(code, message);
}

function checkPort(what: string, port: unknown): void {
	if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535)
		bad('WEIR_ERR_LB_BAD_PORT', `${what}: port ${String(port)} is not an integer in 1..65535`);
}

function checkFrontend(f: Frontend): number {
	if (typeof f?.vip !== 'string' || !isIpv4(f.vip))
		bad('WEIR_ERR_LB_BAD_ADDRESS', `frontend address '${String(f?.vip)}' is not an IPv4 address (IPv6 Services are not load-balanced yet)`);
	checkPort(`frontend ${f.vip}`, f.port);
	const proto = PROTO[f.protocol];
	if (proto === undefined)
		bad('WEIR_ERR_LB_BAD_PROTOCOL', `frontend ${f.vip}:${f.port}: protocol '${String(f.protocol)}' is not TCP or UDP (SCTP Services are not load-balanced)`);
	return proto;
}

/** Validates a whole entry before anything is written; returns the protocol number. */
function checkService(e: ServiceEntry): number {
	const proto = checkFrontend(e.frontend);
	const where = `service ${String(e.id)} (${e.frontend.vip}:${e.frontend.port}/${e.frontend.protocol})`;
	if (!Number.isInteger(e.id) || e.id < 1 || e.id > 65535) bad('WEIR_ERR_LB_BAD_SERVICE_ID', `${where}: the id must be an integer in 1..65535`);
	if (!Number.isInteger(e.affinitySec) || e.affinitySec < 0 || e.affinitySec > MAX_AFFINITY_SEC) {
		bad('WEIR_ERR_LB_BAD_AFFINITY', `${where}: affinitySec ${String(e.affinitySec)} is not an integer in 0..${MAX_AFFINITY_SEC}`);
	}
	if (!Array.isArray(e.backends)) bad('WEIR_ERR_LB_BAD_BACKEND', `${where}: backends must be an array`);
	if (e.backends.length > LB_MAX_BACKENDS) {
		bad('WEIR_ERR_LB_TOO_MANY_BACKENDS', `${where}: ${e.backends.length} backends, more than the ${LB_MAX_BACKENDS} slots a frontend has`);
	}
	for (const b of e.backends) {
		if (typeof b?.ip !== 'string' || !isIpv4(b.ip) || b.ip === '0.0.0.0')
			bad('WEIR_ERR_LB_BAD_ADDRESS', `${where}: backend address '${String(b?.ip)}' is not an IPv4 unicast address`);
		checkPort(`${where}: backend ${b.ip}`, b.port);
	}
	return proto;
}

function protocolName(proto: number): LbProtocol | undefined {
	return proto === IPPROTO.TCP ? 'TCP' : proto === IPPROTO.UDP ? 'UDP' : undefined;
}

/** The pin directory name of a cgroup: its canonical path, one bpffs name. */
function cgroupPinName(cgroupPath: string): string {
	const name = encodeURIComponent(cgroupPath);
	if (name.length > 255) bad('WEIR_ERR_LB_CGROUP', `cgroup path ${cgroupPath} is too long to name its pinned links (255 bytes encoded)`);
	return name;
}

function isCode(err: unknown, ...codes: string[]): boolean {
	return codes.includes((err as NativeError)?.code);
}

export class SocketLb {
	private readonly links = new Map<string, NativeLink>();
	private closed = false;

	private constructor(
		readonly pinRoot: string,
		readonly config: SocketLbConfig,
		private readonly obj: NativeObject,
		private readonly svc: NativeMap,
		private readonly addressed: NativeMap,
		private readonly sources: NativeMap,
	) {}

	/**
	 * Loads sock_lb.bpf.o over the maps already pinned under `pinRoot` (a restarted
	 * agent keeps every Service and the sockets' reverse entries), and attaches it to
	 * `cgroupPath` with pinned cgroup links; links already pinned for that cgroup get
	 * the new programs atomically (bpf_link_update), so translation never stops.
	 */
	static async open(opts: SocketLbOptions): Promise<SocketLb> {
		const config = { ...DEFAULT_LB_CONFIG, ...opts.config };
		if (!Number.isInteger(config.refuseIntervalMs) || config.refuseIntervalMs < 0 || config.refuseIntervalMs > MAX_REFUSE_INTERVAL_MS)
			bad('WEIR_ERR_CONFIG', `socket LB: refuseIntervalMs must be an integer in 0..${MAX_REFUSE_INTERVAL_MS}, got ${config.refuseIntervalMs}`);
		assertOnBpffs(opts.pinRoot);
		mkdirSync(opts.pinRoot, { recursive: true });
		const sizes: Record<string, number> = {
			[MapName.lb4Services]: config.servicesMaxEntries,
			[MapName.lb4Reverse]: config.reverseMaxEntries,
			[MapName.lb4Affinity]: config.affinityMaxEntries,
			[MapName.lb4Addressed]: config.addressedMaxEntries,
			[MapName.lb4Refused]: config.refusedMaxEntries,
			[MapName.lbSources]: config.sourcesMaxEntries,
		};
		for (const [name, want] of Object.entries(sizes)) {
			if (!Number.isInteger(want) || want < 1 || want > 0xffffffff)
				bad('WEIR_ERR_CONFIG', `socket LB: the size of ${name} must be a positive integer, got ${want}`);
			const pin = join(opts.pinRoot, name);
			if (!existsSync(pin)) continue;
			const m = native().openPinnedMap(pin);
			const have = m.maxEntries;
			m.close();
			if (have !== want) {
				bad(
					'WEIR_ERR_LB_MAP_SIZE',
					`${pin} is pinned with ${have} entries but the configuration asks for ${want}: keep the size, or remove the pin (its Services are then rewritten)`,
				);
			}
		}
		const obj = native().openObject(opts.objectPath ?? buildPath('bpf/sock_lb.bpf.o'), {
			pinRoot: opts.pinRoot,
			rodata: {
				weir_cfg_lb_udp: u8(config.udp),
				weir_cfg_lb_tcp_reverse: u8(config.tcpReverse),
				weir_cfg_lb_flow_records: u8(config.flowRecords),
				weir_cfg_lb_refuse_interval_ms: u32(config.refuseIntervalMs),
			},
			maxEntries: sizes,
		});
		try {
			await obj.load();
		} catch (err) {
			obj.close();
			throw err;
		}
		const lb = new SocketLb(opts.pinRoot, config, obj, obj.map(MapName.lb4Services), obj.map(MapName.lb4Addressed), obj.map(MapName.lbSources));
		if (opts.cgroupPath !== undefined) {
			try {
				lb.attach(opts.cgroupPath);
			} catch (err) {
				lb.close();
				throw err;
			}
		}
		return lb;
	}

	private linkDir(cgroupPath: string): string {
		return join(this.pinRoot, CGROUP_LINKS_DIR, cgroupPinName(cgroupPath));
	}

	/** Attaches (or, where pinned links exist, atomically re-programs) every hook at a cgroup. */
	private attach(cgroupPath: string): void {
		let cg: string;
		try {
			cg = realpathSync(cgroupPath);
		} catch (cause) {
			throw new SocketLbError('WEIR_ERR_LB_CGROUP', `cgroup ${cgroupPath} does not exist`, { cause });
		}
		if (statfsSync(cg).type !== CGROUP2_SUPER_MAGIC) {
			bad('WEIR_ERR_LB_CGROUP', `${cg} is not a cgroup v2 directory (on a hybrid host the unified hierarchy is often /sys/fs/cgroup/unified)`);
		}
		const dir = this.linkDir(cg);
		mkdirSync(dir, { recursive: true });
		const made: string[] = [];
		try {
			for (const h of HOOKS) {
				const path = join(dir, h.pin);
				const prog = this.obj.program(h.program);
				let link: NativeLink | undefined;
				if (existsSync(path)) {
					link = native().openPinnedLink(path);
					try {
						link.update(prog);
					} catch (err) {
						link.close();
						link = undefined;
						// ENOLINK: the pinned link outlived its attachment; replace it.
						if (!isCode(err, 'ENOLINK')) throw err;
						rmSync(path);
					}
				}
				if (!link) {
					link = prog.attachCgroup(cg, h.attachType);
					try {
						link.pin(path);
					} catch (err) {
						link.detach();
						throw err;
					}
					made.push(path);
				}
				this.links.get(path)?.close();
				this.links.set(path, link);
			}
		} catch (err) {
			for (const path of made.reverse()) {
				this.links.get(path)?.detach();
				this.links.delete(path);
				rmSync(path, { force: true });
			}
			throw err;
		}
	}

	/** Every frontend with its backends, read back from the services map (backends in slot order). */
	services(): Array<{ id: number; frontend: Frontend; backends: Backend[]; affinitySec: number }> {
		this.assertOpen();
		const masters = new Map<string, { frontend: Frontend; count: number; id: number; affinitySec: number }>();
		const slots = new Map<string, Map<number, Backend>>();
		for (const [k, v] of this.svc.entries()) {
			const key = decodeLb4Key(k);
			const protocol = protocolName(key.proto);
			if (!protocol) continue;
			const fe = `${key.vip}:${key.port}/${protocol}`;
			const val = decodeLb4Service(v);
			if (key.slot === 0) {
				masters.set(fe, { frontend: { vip: key.vip, port: key.port, protocol }, count: val.count, id: val.serviceId, affinitySec: val.affinityTimeoutSec });
			} else {
				if (!slots.has(fe)) slots.set(fe, new Map());
				slots.get(fe)!.set(key.slot, { ip: val.backendIp, port: val.backendPort });
			}
		}
		const out = [...masters.entries()].map(([fe, m]) => {
			const backends: Backend[] = [];
			for (let s = 1; s <= m.count; s++) {
				const b = slots.get(fe)?.get(s);
				if (b) backends.push(b);
			}
			return { id: m.id, frontend: m.frontend, backends, affinitySec: m.affinitySec };
		});
		return out.sort((a, b) => a.id - b.id || a.frontend.vip.localeCompare(b.frontend.vip) || a.frontend.port - b.frontend.port);
	}

	/**
	 * Creates or replaces a frontend. Everything is validated before the first write.
	 * Slots are written before the master entry that counts them; slots past a smaller
	 * new count are deleted after it: a connect reads either the old or the new count,
	 * and every slot that count names is there.
	 */
	upsertService(e: { id: number; frontend: Frontend; backends: readonly Backend[]; affinitySec: number }): void {
		this.assertOpen();
		const proto = checkService(e);
		const { vip, port } = e.frontend;
		const n = e.backends.length;
		if (n > 0) {
			const keys = Buffer.concat(e.backends.map((_, i) => lb4Key(vip, port, proto, i + 1)));
			const values = Buffer.concat(e.backends.map((b) => lb4Slot(e.id, b.ip, b.port)));
			this.svc.updateBatch(keys, values);
		}
		const flags = e.affinitySec > 0 ? LbFlags.Affinity : 0;
		this.svc.update(lb4Key(vip, port, proto, 0), lb4Master({ count: n, serviceId: e.id, flags, affinityTimeoutSec: e.affinitySec }));
		this.deleteSlotsFrom(vip, port, proto, n + 1);
	}

	/**
	 * Deletes a frontend: the master first (connects are untranslated from then on),
	 * then its slots. Reverse, affinity and socket entries that name it are left to
	 * age out: the programs use none of them without the frontend's master entry.
	 */
	deleteService(f: Frontend): void {
		this.assertOpen();
		const proto = checkFrontend(f);
		this.svc.delete(lb4Key(f.vip, f.port, proto, 0));
		this.deleteSlotsFrom(f.vip, f.port, proto, 1);
	}

	/**
	 * Deletes slots `from`, `from + 1`, … up to the first that is missing: the slots
	 * past the master's count, including any an interrupted upsert left behind.
	 */
	private deleteSlotsFrom(vip: string, port: number, proto: number, from: number): void {
		const stale: Buffer[] = [];
		for (let s = from; s <= LB_MAX_BACKENDS; s++) {
			const k = lb4Key(vip, port, proto, s);
			if (!this.svc.lookup(k)) break;
			stale.push(k);
		}
		if (stale.length) this.svc.deleteBatch(Buffer.concat(stale));
	}

	/** which service id a client netns last reached this backend through (flows), if any */
	addressedService(netnsCookie: bigint, backend: Backend, protocol: LbProtocol): number | undefined {
		this.assertOpen();
		const proto = PROTO[protocol];
		if (proto === undefined || !isIpv4(backend.ip) || !Number.isInteger(backend.port) || backend.port < 1 || backend.port > 65535) return undefined;
		const v = this.addressed.lookup(lb4AddressedKey(netnsCookie, backend.ip, backend.port, proto));
		return v ? decodeLb4Addressed(v).serviceId : undefined;
	}

	/**
	 * Marks a client network namespace as a meshed source, or unmarks it: connect4 and
	 * sendmsg4 then leave its sockets' ClusterIPs untranslated (and refuse nothing),
	 * for its ztunnel load-balances Services itself (DESIGN.md). Nothing in the agent
	 * marks sources yet: that comes with the ztunnel (docs/services.md).
	 */
	setMeshedSource(netnsCookie: bigint, meshed: boolean): void {
		this.assertOpen();
		if (meshed) this.sources.update(u64(netnsCookie), encode('weir_lb_source', { flags: LbSourceFlags.Meshed }));
		else this.sources.delete(u64(netnsCookie));
	}

	/** The network namespace cookies marked as meshed sources. */
	meshedSources(): bigint[] {
		this.assertOpen();
		return this.sources
			.entries()
			.filter(([, v]) => ((decode('weir_lb_source', v)['flags'] as number) & LbSourceFlags.Meshed) !== 0)
			.map(([k]) => k.readBigUInt64LE(0))
			.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
	}

	/** The cgroups with pinned links under this pin root (this process's and earlier ones'). */
	attachedCgroups(): string[] {
		const dir = join(this.pinRoot, CGROUP_LINKS_DIR);
		if (!existsSync(dir)) return [];
		return readdirSync(dir)
			.filter((d) => readdirSync(join(dir, d)).length > 0)
			.map((d) => decodeURIComponent(d))
			.sort();
	}

	/** Detaches every pinned cgroup link under this pin root and removes the pins; the maps stay. */
	detach(): void {
		const warnings: string[] = [];
		for (const l of this.links.values()) l.close();
		this.links.clear();
		// In CGROUP_HOOK_PINS order: nothing is translated once the reverse hooks are gone.
		for (const rel of pinnedCgroupLinks(this.pinRoot)) {
			const path = join(this.pinRoot, rel);
			try {
				native().openPinnedLink(path).detach();
			} catch (err) {
				if (!isCode(err, 'ENOENT', 'ENOLINK')) warnings.push(`${path}: ${(err as Error).message}`);
			}
			rmSync(path, { force: true });
		}
		const dir = join(this.pinRoot, CGROUP_LINKS_DIR);
		if (existsSync(dir)) {
			for (const d of readdirSync(dir)) rmdirSync(join(dir, d));
			rmdirSync(dir);
		}
		if (warnings.length) bad('WEIR_ERR_LB_DETACH', `detaching the socket load balancer: ${warnings.join('; ')}`);
	}

	/**
	 * Releases this process's handles. Pinned maps and links stay: Services keep being
	 * translated with no agent running.
	 */
	close(): void {
		if (this.closed) return;
		this.closed = true;
		for (const l of this.links.values()) l.close();
		this.links.clear();
		this.svc.close();
		this.addressed.close();
		this.sources.close();
		this.obj.close();
	}

	private assertOpen(): void {
		if (this.closed) bad('WEIR_ERR_CLOSED', 'socket load balancer handle is closed');
	}
}

/** The cookie of a network namespace (e.g. /run/netns/x, /proc/<pid>/ns/net), as the programs see it. */
export function netnsCookie(netnsPath: string): bigint {
	return native().netnsCookie(netnsPath);
}
