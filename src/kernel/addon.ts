// The only module that loads the native addon (build/addon/Release/weir_native.node).
// It declares the binding's contract; everything else uses the typed classes in
// this folder, never the binding directly.
import { createRequire } from 'node:module';
import { buildPath } from '../shared/package.js';

/** Error thrown by every native call that fails. */
export interface NativeError extends Error {
	/** errno name, e.g. 'EPERM', 'ENOENT', 'EINVAL'. */
	code: string;
	/** positive errno value. */
	errno: number;
	/** the failing operation, e.g. 'bpf_object__load', 'bpf_link_create'. */
	op: string;
	/** verifier log and libbpf messages for load failures ('' otherwise). */
	log: string;
}

export type TcDirection = 'ingress' | 'egress';

// Calls that take `netns` (a path such as /run/netns/x or /proc/<pid>/ns/net) do
// their kernel work on a short-lived native thread that entered that namespace, so
// the process itself never changes namespace. An ifindex is always relative to it.

export interface TestRunOptions {
	/** packet bytes, starting at the Ethernet header. */
	data: Buffer;
	/** repeat count (>= 1). */
	repeat?: number;
	/** optional __sk_buff context (struct __sk_buff bytes) in. */
	ctx?: Buffer;
	/** size of the data_out buffer (default data.length + 256). */
	dataOutSize?: number;
}

export interface TestRunResult {
	retval: number;
	/** average ns per run as reported by the kernel. */
	duration: number;
	dataOut: Buffer;
	ctxOut: Buffer | null;
}

export interface NativeObjectOptions {
	/**
	 * directory in bpffs (must exist) where maps with LIBBPF_PIN_BY_NAME are pinned and
	 * reused. Without it nothing is pinned (libbpf's default, /sys/fs/bpf, is not used).
	 */
	pinRoot?: string;
	/** values for `const volatile` globals, by variable name; each Buffer must be exactly the variable's size. */
	rodata?: Record<string, Buffer>;
	/**
	 * max_entries of maps, by map name, set before load (bpf_map__set_max_entries). A map
	 * reused from a pin must have the same size, or load fails (libbpf refuses it).
	 */
	maxEntries?: Record<string, number>;
	/** verifier log level for load (default 0: log only on failure, then retried with 1). */
	logLevel?: number;
}

export interface NativeMapInfo {
	name: string;
	/** numeric BPF map type (enum bpf_map_type). */
	type: number;
	keySize: number;
	valueSize: number;
	maxEntries: number;
	/** kernel map id. */
	id: number;
}

export interface NativeMap extends NativeMapInfo {
	readonly fd: number;
	/** null when absent. For per-CPU maps the value is nCPU * round_up(valueSize, 8) bytes. */
	lookup(key: Buffer): Buffer | null;
	/** flags: 0 = BPF_ANY, 1 = BPF_NOEXIST, 2 = BPF_EXIST. */
	update(key: Buffer, value: Buffer, flags?: number): void;
	/** true if an entry was deleted, false if it did not exist. */
	delete(key: Buffer): boolean;
	/** all keys (bpf_map_get_next_key walk); [] for a ring buffer. */
	keys(): Buffer[];
	/** all entries; uses BPF_MAP_LOOKUP_BATCH where the map supports it, else a key walk; [] for a ring buffer. */
	entries(): Array<[Buffer, Buffer]>;
	/** BPF_MAP_UPDATE_BATCH (fallback: one update per key). keys/values are concatenated fixed-size records. Returns count updated. */
	updateBatch(keys: Buffer, values: Buffer, flags?: number): number;
	/** BPF_MAP_DELETE_BATCH (fallback: one delete per key, missing keys ignored). Returns count deleted. */
	deleteBatch(keys: Buffer): number;
	/** bpf_obj_pin to the path. */
	pin(path: string): void;
	/** close the fd (the map lives on while pinned or used by a program). */
	close(): void;
}

export interface NativeLink {
	/** 'tcx' for a BPF link, 'tc' for a legacy clsact filter, 'cgroup' for a cgroup link. */
	readonly kind: 'tcx' | 'tc' | 'cgroup';
	/** the link fd; -1 for a legacy tc filter and after close()/detach(). */
	readonly fd: number;
	/** pin a link (tcx/cgroup only; legacy tc throws EOPNOTSUPP). */
	pin(path: string): void;
	/** atomically replace the program behind the link (tcx/cgroup: bpf_link_update; tc: bpf_tc_attach with BPF_TC_F_REPLACE). */
	update(prog: NativeProgram): void;
	/** detach from the hook (tcx/cgroup: BPF_LINK_DETACH; tc: bpf_tc_detach) and close. Idempotent. */
	detach(): void;
	/** close our fd only; a pinned link or legacy tc filter stays attached. */
	close(): void;
}

export interface NativeProgram {
	readonly name: string;
	readonly fd: number;
	/** kernel prog id. */
	readonly id: number;
	pin(path: string): void;
	testRun(opts: TestRunOptions): TestRunResult;
	/** tcx link where the kernel has it (BPF_TCX_INGRESS/EGRESS via bpf_link_create), else legacy clsact + bpf_tc_attach (handle 1, priority 1). */
	attachTc(ifindex: number, direction: TcDirection, opts?: { legacy?: boolean; netns?: string }): NativeLink;
	/** attachTc on the libuv pool (the kernel's RCU waits off the event loop). */
	attachTcAsync(ifindex: number, direction: TcDirection, opts?: { legacy?: boolean; netns?: string }): Promise<NativeLink>;
	/**
	 * cgroup link (bpf_link_create with the attach type named as libbpf names it, e.g.
	 * 'cgroup_inet4_connect') on a cgroup v2 directory; pinnable, updatable.
	 */
	attachCgroup(cgroupPath: string, attachType: string): NativeLink;
	close(): void;
}

export interface NativeObject {
	/** load into the kernel (verifier); rejects with NativeError (log = verifier log). */
	load(): Promise<void>;
	mapNames(): string[];
	programNames(): string[];
	map(name: string): NativeMap;
	program(name: string): NativeProgram;
	/** close the object: programs and map fds (pins and links stay). */
	close(): void;
}

export interface NativeRingBuffer {
	/** stop the poller thread and release the map fd. Idempotent. */
	close(): void;
}

// rtnetlink (native/addon/src/netlink.h). The optional last `netns` argument is a
// namespace path; the work then runs on a native thread that entered it.

export interface NativeLinkRow {
	ifindex: number;
	name: string;
	/** IFLA_INFO_KIND ('veth', 'bridge' …; '' for none) */
	kind: string;
	mac: string;
	mtu: number;
	/** administratively up (IFF_UP) */
	up: boolean;
	operUp: boolean;
	/** IFLA_LINK: for a veth, the peer's ifindex (in the peer's netns) */
	peerIfindex: number;
	/** IFLA_LINK_NETNSID, -1 when the peer is in the same netns */
	linkNetnsid: number;
	master: number;
}

export interface NativeAddrRow {
	ifindex: number;
	family: 4 | 6;
	address: string;
	prefixLen: number;
	scope: number;
}

export interface NativeRouteSpec {
	/** 'a.b.c.d/len' ('0.0.0.0/0' for a default route) */
	dst: string;
	gateway?: string;
	/** interface name (resolved in the netns) */
	dev?: string;
	scope?: 'universe' | 'link' | 'host';
	onlink?: boolean;
	table?: number;
	/** 'unicast' (default) or 'local' (scope host unless given): `local default dev lo table T` */
	type?: 'unicast' | 'local';
}

export interface NativeRouteRow {
	family: 4 | 6;
	dst: string;
	gateway?: string;
	ifindex: number;
	scope: 'universe' | 'link' | 'host';
	table: number;
	onlink: boolean;
	/** the route's type (always set by the addon) */
	type?: 'unicast' | 'local' | 'other';
}

/** An IPv4 policy-routing rule: `ip rule add pref PRIORITY fwmark FWMARK/FWMASK lookup TABLE`. */
export interface NativeRuleSpec {
	priority: number;
	fwmark: number;
	/** default 0xffffffff */
	fwmask?: number;
	table: number;
}

export interface NativeRuleRow {
	priority: number;
	/** 0 when the rule does not match on the mark */
	fwmark: number;
	fwmask: number;
	table: number;
	action: 'lookup' | 'other';
}

/** tcpListenTransparent's options: an IP_TRANSPARENT listener (SO_REUSEADDR). */
export interface NativeTransparentListen {
	address: string;
	port: number;
	/** SO_MARK (0: none) */
	mark?: number;
	backlog?: number;
	/** network namespace path where the socket is made (default: this process's) */
	netns?: string;
}

/** tcpConnectTransparent's options: a connection from a foreign source address. */
export interface NativeTransparentConnect {
	/** local address to bind, which no interface needs to have */
	source: string;
	/** 0 or absent: the kernel picks */
	sourcePort?: number;
	address: string;
	port: number;
	mark?: number;
	/** handshake timeout (default 5000) */
	timeoutMs?: number;
	netns?: string;
}

export interface NativeNeighRow {
	ifindex: number;
	ip: string;
	mac: string;
	permanent: boolean;
}

export interface NativeBinding {
	libbpfVersion(): string;
	openObject(path: string, opts?: NativeObjectOptions): NativeObject;
	/** open a pinned map by path (bpf_obj_get) */
	openPinnedMap(path: string): NativeMap;
	/** open a pinned tcx/cgroup link by path */
	openPinnedLink(path: string): NativeLink;
	/** open a pinned program by path */
	openPinnedProgram(path: string): NativeProgram;
	/**
	 * Consume a BPF_MAP_TYPE_RINGBUF map on a native thread; records are delivered
	 * to `onBatch` on the JS thread in batches (each record its own Buffer copy).
	 * If polling fails (op 'epoll_wait' or 'ring_buffer__consume') the poller stops
	 * and calls `onError` once, after the records read before it; nothing follows, and
	 * close() still releases the ring. Without `onError` the failure goes to stderr.
	 */
	openRingBuffer(map: NativeMap, onBatch: (records: Buffer[]) => void, onError?: (err: NativeError) => void): NativeRingBuffer;
	/** ids of programs attached via tcx at ifindex/direction (BPF_PROG_QUERY), [] if none. */
	tcxQuery(ifindex: number, direction: TcDirection, netns?: string): number[];
	/** ids of programs attached via legacy clsact tc filters at ifindex/direction. */
	tcLegacyQuery(ifindex: number, direction: TcDirection, netns?: string): number[];
	/** if_nametoindex in the current netns (or the one at `netns`); 0 if missing. */
	ifNameToIndex(name: string, netns?: string): number;
	/** number of possible CPUs (libbpf_num_possible_cpus). */
	numPossibleCpus(): number;
	/**
	 * the cookie of a network namespace (SO_NETNS_COOKIE of a socket opened in it on a
	 * native thread; what bpf_get_netns_cookie() gives a program for its sockets);
	 * without `netns`, this process's namespace.
	 */
	netnsCookie(netns?: string): bigint;
	/**
	 * A listening TCP socket with IP_TRANSPARENT (and SO_MARK): the fd, which the caller
	 * owns from then on (`net.createServer().listen({ fd })`).
	 */
	tcpListenTransparent(opts: NativeTransparentListen): number;
	/** A connected TCP socket bound to a foreign source (IP_TRANSPARENT, SO_MARK): the fd, owned by the caller (`new net.Socket({ fd })`). */
	tcpConnectTransparent(opts: NativeTransparentConnect): Promise<number>;
	// rtnetlink calls run on the libuv pool (AsyncWorker) and resolve when done.
	/** veth pair `name` (in netns) / `peerName` (created directly in `peerNetns` when given). */
	nlVethAdd(opts: { name: string; peerName: string; peerNetns?: string; mtu?: number; peerMac?: string }, netns?: string): Promise<void>;
	/** set flags/attributes of a link; `netnsPath` moves it into that namespace. */
	nlLinkSet(name: string, opts: { up?: boolean; mtu?: number; mac?: string; newName?: string; netnsPath?: string }, netns?: string): Promise<void>;
	/** false when there was no such link */
	nlLinkDel(name: string, netns?: string): Promise<boolean>;
	nlLinkList(netns?: string): Promise<NativeLinkRow[]>;
	nlAddrAdd(dev: string, cidr: string, netns?: string): Promise<boolean>;
	/** false when the address or the link was not there */
	nlAddrDel(dev: string, cidr: string, netns?: string): Promise<boolean>;
	nlAddrList(netns?: string): Promise<NativeAddrRow[]>;
	nlRouteAdd(route: NativeRouteSpec, netns?: string): Promise<boolean>;
	/** false when no such route (or link) */
	nlRouteDel(route: NativeRouteSpec, netns?: string): Promise<boolean>;
	/** routes of one table (default: main) */
	nlRouteList(netns?: string, table?: number): Promise<NativeRouteRow[]>;
	/** false when the same rule was already there */
	nlRuleAdd(rule: NativeRuleSpec, netns?: string): Promise<boolean>;
	/** false when there was no such rule */
	nlRuleDel(rule: NativeRuleSpec, netns?: string): Promise<boolean>;
	/** IPv4 rules */
	nlRuleList(netns?: string): Promise<NativeRuleRow[]>;
	/** permanent neighbour entry (replaces) */
	nlNeighAdd(opts: { dev: string; ip: string; mac: string }, netns?: string): Promise<void>;
	nlNeighList(netns?: string): Promise<NativeNeighRow[]>;
	/** write a net.* sysctl of the netns ('net.ipv4.ip_forward' or 'net/ipv4/conf/eth0.1/rp_filter') */
	nlSysctlWrite(key: string, value: string, netns?: string): Promise<void>;
	nlSysctlRead(key: string, netns?: string): Promise<string>;
}

function addonPath(): string {
	return process.env['WEIR_ADDON'] ?? buildPath('addon/Release/weir_native.node');
}

let cached: NativeBinding | undefined;

/** Loads the addon once per process. */
export function native(): NativeBinding {
	if (!cached) {
		const require = createRequire(import.meta.url);
		cached = require(addonPath()) as NativeBinding;
	}
	return cached;
}
