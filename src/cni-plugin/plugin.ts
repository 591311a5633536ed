// The CNI commands (the imperative shell): ADD, DEL, CHECK, VERSION, GC, STATUS.
// Parsing, validation and result building are pure (config.ts, result.ts); this file
// does the kernel work through narrow capabilities: rtnetlink, the datapath, IPAM,
// the endpoint store and the agent's admission hook.
import { existsSync } from 'node:fs';
import { Netlink, isNativeError } from '../kernel/netlink.js';
import type { LocalEndpoint } from '../shared/endpoint.js';
import { CniEnv, LATEST_VERSION, NetConf, SUPPORTED_VERSIONS, parseEnv, parseNetConf, replyVersion } from './config.js';
import { EndpointRecord, EndpointStore } from './endpoint-store.js';
import { CniCode, CniError, asCniError } from './errors.js';
import { Ipam } from './ipam.js';
import { GATEWAY_IP, buildResult, expectedFromPrev, formatResult, hostIfName, ipamAddress, versionResult } from './result.js';

/** What the plugin needs from the datapath (src/bpf/datapath.ts implements it). */
export interface DatapathPort {
	attach(ifindex: number, opts: { netns?: string }): unknown;
	attachAsync(ifindex: number, opts: { netns?: string }): Promise<unknown>;
	detach(ifindex: number): void;
	/** drop handles and pins of an attachment whose interface is gone (no detach call) */
	release(ifindex: number): void;
	deleteEndpoint(ip: string): boolean;
	isAttached(ifindex: number, netns?: string): boolean;
}

/** What the plugin needs of rtnetlink in one network namespace (src/bpf/netlink.ts implements it). */
export type NetlinkPort = Pick<
	Netlink,
	'vethAdd' | 'linkSet' | 'linkDel' | 'link' | 'addrAdd' | 'addrs' | 'routeAdd' | 'routes' | 'neighAdd' | 'neighbours' | 'sysctl'
>;

export interface PluginLogger {
	info(obj: object, msg: string): void;
	warn(obj: object, msg: string): void;
	error(obj: object, msg: string): void;
}

export interface PluginDeps {
	datapath: DatapathPort;
	store: EndpointStore;
	ipam: Ipam;
	/**
	 * Writes the new endpoint's datapath entry (identity and isolation). The agent runs
	 * its policy controller here, or writes the fail-closed default (see app.ts).
	 */
	admit(ep: LocalEndpoint): void;
	/** undefined when ready to serve ADD; else why not (STATUS, code 11/50) */
	notReady(): string | undefined;
	/** network namespace of the node side (undefined: the agent's own) */
	hostNetns?: string;
	/** rtnetlink in a namespace (default: the addon's, Netlink.in) */
	netlink?: (netns: string | undefined) => NetlinkPort;
	log: PluginLogger;
}

export interface CniResponse {
	/** the executable's exit status */
	code: number;
	/** what it prints on stdout */
	stdout: string;
}

/** Serializes work per container (ADD/DEL/CHECK of one attachment never overlap). */
class KeyedLock {
	private readonly tails = new Map<string, Promise<void>>();

	async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
		const prev = this.tails.get(key) ?? Promise.resolve();
		let release!: () => void;
		const mine = new Promise<void>((r) => (release = r));
		const tail = prev.then(() => mine);
		this.tails.set(key, tail);
		await prev;
		try {
			return await fn();
		} finally {
			release();
			if (this.tails.get(key) === tail) this.tails.delete(key);
		}
	}
}

function ipamEnv(r: Pick<EndpointRecord, 'containerId' | 'netns' | 'ifname'>, args: string): Record<string, string> {
	return { CNI_CONTAINERID: r.containerId, CNI_NETNS: r.netns, CNI_IFNAME: r.ifname, CNI_ARGS: args };
}

function cniArgsString(args: Record<string, string>): string {
	return Object.entries(args)
		.map(([k, v]) => `${k}=${v}`)
		.join(';');
}

export class CniPlugin {
	private readonly lock = new KeyedLock();
	private readonly host: NetlinkPort;
	private readonly netlink: (netns: string | undefined) => NetlinkPort;

	constructor(private readonly deps: PluginDeps) {
		this.netlink = deps.netlink ?? Netlink.in;
		this.host = this.netlink(deps.hostNetns);
	}

	/** The whole request → (exit code, stdout). Never throws. */
	async handle(rawEnv: Readonly<Record<string, string | undefined>>, stdin: Buffer | string): Promise<CniResponse> {
		const version = replyVersion(stdin);
		try {
			const env = parseEnv(rawEnv);
			if (env.command === 'VERSION') return this.cmdVersion(stdin);
			const conf = parseNetConf(stdin, env.command);
			switch (env.command) {
				case 'ADD':
					return await this.lock.run(`${env.containerId}/${env.ifname}`, () => this.cmdAdd(env, conf));
				case 'DEL':
					return await this.lock.run(`${env.containerId}/${env.ifname}`, () => this.cmdDel(env, conf));
				case 'CHECK':
					return await this.lock.run(`${env.containerId}/${env.ifname}`, () => this.cmdCheck(env, conf));
				case 'GC':
					return await this.cmdGc(conf);
				case 'STATUS':
					return this.cmdStatus();
			}
		} catch (err) {
			const e = asCniError(err, 'weir: unexpected failure');
			if (e.code === CniCode.Other) this.deps.log.error({ err: e.details, command: rawEnv['CNI_COMMAND'] }, e.message);
			return { code: 1, stdout: JSON.stringify(e.toJSON(version)) };
		}
	}

	private cmdVersion(stdin: Buffer | string): CniResponse {
		const v = replyVersion(stdin);
		const reply = (SUPPORTED_VERSIONS as readonly string[]).includes(v) ? v : LATEST_VERSION;
		return { code: 0, stdout: JSON.stringify(versionResult(reply, SUPPORTED_VERSIONS)) };
	}

	private requireReady(): void {
		const why = this.deps.notReady();
		if (why) throw new CniError(CniCode.TryAgainLater, 'weir agent is not ready, try again later', why);
	}

	private async cmdAdd(env: CniEnv, conf: NetConf): Promise<CniResponse> {
		this.requireReady();
		if (!existsSync(env.netns)) throw new CniError(CniCode.InvalidEnv, 'CNI_NETNS does not exist', env.netns);
		const { store, datapath, log } = this.deps;
		// A previous attachment under the same key (a retry after a failed or interrupted
		// ADD, without the DEL the runtime should have sent): undo it first.
		const old = store.get(env.containerId, env.ifname);
		if (old) {
			log.warn({ containerId: env.containerId, state: old.state }, 'ADD over an existing attachment: removing it first');
			await this.teardown(old);
		}
		const namespace = env.args['K8S_POD_NAMESPACE'] ?? '';
		const pod = env.args['K8S_POD_NAME'] ?? '';
		const hostIf = hostIfName(env.containerId, env.ifname);
		const rec: EndpointRecord = {
			containerId: env.containerId,
			ifname: env.ifname,
			netns: env.netns,
			network: conf.name,
			namespace,
			pod,
			hostIf,
			hostIfindex: 0,
			epId: store.allocateEpId(),
			ip: '',
			state: 'adding',
			ipam: { type: conf.ipam.type, path: env.path, args: cniArgsString(env.args), conf: conf.raw },
			ipamAllocated: false,
			createdAt: new Date().toISOString(),
		};
		const podNl = this.netlink(env.netns);
		let success = false;
		// Journal first: a crash from here on leaves a record the next agent undoes.
		// IPAM DEL of an address never allocated is harmless: mark it before the call.
		rec.ipamAllocated = true;
		store.put(rec);
		try {
			const ipamResult = await this.deps.ipam.exec({
				command: 'ADD',
				type: conf.ipam.type,
				path: env.path,
				env: ipamEnv(rec, rec.ipam.args),
				conf: conf.raw,
			});
			const addr = ipamAddress(ipamResult, conf.ipam.type);
			rec.ip = addr.ip;
			store.put(rec);

			// Leftovers of an interrupted ADD whose journal was lost: our name, our veth.
			await this.host.linkDel(hostIf);
			if (await podNl.link(env.ifname)) {
				throw new CniError(CniCode.Other, `interface ${env.ifname} already exists in ${env.netns}`, 'another plugin or a previous ADD owns it');
			}
			const mtu = conf.mtu;
			await this.host.vethAdd({ name: hostIf, peerName: env.ifname, peerNetns: env.netns, ...(mtu ? { mtu } : {}) });
			const hostLink = await this.host.link(hostIf);
			if (!hostLink) throw new CniError(CniCode.Other, `veth ${hostIf} vanished after creation`);
			rec.hostIfindex = hostLink.ifindex;

			// Node side: no IPv6 on the veth, no reverse-path filtering, forwarding on.
			await Promise.all([
				this.host.sysctl(`net/ipv6/conf/${hostIf}/disable_ipv6`, '1'),
				this.host.sysctl(`net/ipv4/conf/${hostIf}/rp_filter`, '0'),
				this.host.sysctl(`net/ipv4/conf/${hostIf}/forwarding`, '1'),
			]);
			await this.host.linkSet(hostIf, { up: true });

			// Pod side: lo up, the /32, the link-local gateway by its MAC (no ARP for it,
			// Cilium's way), a default route through it.
			await Promise.all([podNl.linkSet('lo', { up: true }), podNl.sysctl(`net/ipv6/conf/${env.ifname}/disable_ipv6`, '1')]);
			await podNl.addrAdd(env.ifname, `${addr.ip}/32`);
			await podNl.linkSet(env.ifname, { up: true });
			await podNl.neighAdd({ dev: env.ifname, ip: GATEWAY_IP, mac: hostLink.mac });
			await podNl.routeAdd({ dst: `${GATEWAY_IP}/32`, dev: env.ifname, scope: 'link' });
			await podNl.routeAdd({ dst: '0.0.0.0/0', gateway: GATEWAY_IP, dev: env.ifname, onlink: true });
			const podLink = await podNl.link(env.ifname);
			if (!podLink) throw new CniError(CniCode.Other, `interface ${env.ifname} vanished in ${env.netns}`);

			// Node side route to the pod, then the datapath on the host veth.
			await this.host.routeAdd({ dst: `${addr.ip}/32`, dev: hostIf, scope: 'link' });
			await datapath.attachAsync(hostLink.ifindex, this.deps.hostNetns ? { netns: this.deps.hostNetns } : {});

			rec.state = 'ready';
			store.put(rec);
			this.deps.admit({ namespace, pod, ip: addr.ip, epId: rec.epId, ifindex: hostLink.ifindex });

			const result = buildResult(conf.cniVersion, {
				hostIf: { name: hostIf, mac: hostLink.mac, mtu: hostLink.mtu },
				podIf: { name: env.ifname, mac: podLink.mac, mtu: podLink.mtu, sandbox: env.netns },
				ip: addr.ip,
				...(conf.dns ? { dns: conf.dns } : addr.dns ? { dns: addr.dns } : {}),
			});
			success = true;
			log.info({ containerId: env.containerId, namespace, pod, ip: addr.ip, hostIf, epId: rec.epId }, 'pod wired');
			return { code: 0, stdout: JSON.stringify(formatResult(result, conf.cniVersion)) };
		} catch (err) {
			throw err instanceof CniError ? err : asCniError(err, `weir: wiring ${env.ifname} in ${env.netns} failed`);
		} finally {
			if (!success) {
				try {
					await this.teardown(rec, { lenientIpam: true });
				} catch (err) {
					log.error({ containerId: env.containerId, err: (err as Error).message }, 'rollback of a failed ADD incomplete');
				}
			}
		}
	}

	/**
	 * Removes everything an attachment made, tolerating what is already gone: endpoint
	 * entry, datapath links and pins, the veth pair (its host route goes with it),
	 * the IPAM allocation, the record. Throws only when IPAM DEL fails (the runtime
	 * retries DEL then).
	 */
	async teardown(rec: EndpointRecord, opts: { lenientIpam?: boolean } = {}): Promise<void> {
		const { store, datapath, log } = this.deps;
		if (rec.ip) datapath.deleteEndpoint(rec.ip);
		const link = await this.host.link(rec.hostIf);
		const ifindex = link?.ifindex ?? rec.hostIfindex;
		// Deleting the veth (the peer and the host route go with it) detaches the tcx
		// links in the kernel; then only our pins remain to drop. An explicit detach
		// first would cost two RCU grace periods per pod for nothing.
		if (link) await this.host.linkDel(rec.hostIf);
		if (ifindex) datapath.release(ifindex);
		// A pod side left behind by a crash between veth creation and move cannot
		// exist: the peer is created inside the pod netns. Nothing else to undo there.
		if (rec.ipamAllocated) {
			try {
				await this.deps.ipam.exec({
					command: 'DEL',
					type: rec.ipam.type,
					path: rec.ipam.path,
					env: ipamEnv(rec, rec.ipam.args),
					conf: rec.ipam.conf,
				});
			} catch (err) {
				// DEL keeps the record so the runtime's retry releases the address; a
				// rolled-back ADD whose IPAM plugin cannot even run has nothing to release.
				if (!opts.lenientIpam) throw err;
				log.warn({ containerId: rec.containerId, err: (err as Error).message }, 'IPAM DEL during rollback failed');
			}
		}
		store.remove(rec.containerId, rec.ifname);
	}

	private async cmdDel(env: CniEnv, conf: NetConf): Promise<CniResponse> {
		const rec = this.deps.store.get(env.containerId, env.ifname);
		if (rec) {
			await this.teardown(rec);
		} else {
			// Unknown to us (never added, or already deleted): still release what might
			// be left under our deterministic names, and the IPAM allocation.
			const hostIf = hostIfName(env.containerId, env.ifname);
			const link = await this.host.link(hostIf);
			if (link) {
				await this.host.linkDel(hostIf);
				this.deps.datapath.release(link.ifindex);
			}
			await this.deps.ipam.exec({
				command: 'DEL',
				type: conf.ipam.type,
				path: env.path,
				env: ipamEnv({ containerId: env.containerId, netns: env.netns, ifname: env.ifname }, cniArgsString(env.args)),
				conf: conf.raw,
			});
		}
		this.deps.log.info({ containerId: env.containerId, known: !!rec }, 'pod unwired');
		return { code: 0, stdout: '' };
	}

	private async cmdCheck(env: CniEnv, conf: NetConf): Promise<CniResponse> {
		this.requireReady();
		const rec = this.deps.store.get(env.containerId, env.ifname);
		if (!rec || rec.state !== 'ready') {
			throw new CniError(CniCode.UnknownContainer, `unknown container ${env.containerId}`, `weir has no attachment ${env.containerId}/${env.ifname}`);
		}
		const exp = expectedFromPrev(conf.prevResult, env.ifname, env.netns);
		const drift = (msg: string, details = ''): CniError => new CniError(CniCode.Other, `CHECK: ${msg}`, details);
		if (exp.ip !== rec.ip) throw drift(`prevResult address ${exp.ip} is not the pod's ${rec.ip}`);
		if (!existsSync(env.netns)) throw drift(`network namespace ${env.netns} is gone`);
		const podNl = this.netlink(env.netns);
		const podLink = await podNl.link(env.ifname);
		if (!podLink) throw drift(`interface ${env.ifname} is missing in ${env.netns}`);
		if (!podLink.up) throw drift(`interface ${env.ifname} is down`);
		if (exp.podMac && podLink.mac !== exp.podMac) throw drift(`interface ${env.ifname} has MAC ${podLink.mac}, prevResult says ${exp.podMac}`);
		const addrs = (await podNl.addrs()).filter((a) => a.ifindex === podLink.ifindex && a.family === 4);
		if (!addrs.some((a) => a.address === rec.ip && a.prefixLen === 32)) {
			throw drift(`address ${rec.ip}/32 is missing on ${env.ifname}`, `found: ${addrs.map((a) => `${a.address}/${a.prefixLen}`).join(', ') || 'none'}`);
		}
		const routes = await podNl.routes();
		if (!routes.some((r) => r.dst === '0.0.0.0/0' && r.gateway === GATEWAY_IP && r.ifindex === podLink.ifindex)) {
			throw drift(`default route via ${GATEWAY_IP} dev ${env.ifname} is missing`);
		}
		if (!routes.some((r) => r.dst === `${GATEWAY_IP}/32` && r.ifindex === podLink.ifindex)) throw drift(`route to the gateway ${GATEWAY_IP} is missing`);
		const hostLink = await this.host.link(rec.hostIf);
		if (!hostLink) throw drift(`host veth ${rec.hostIf} is missing`);
		if (!hostLink.up) throw drift(`host veth ${rec.hostIf} is down`);
		if (exp.hostIf && exp.hostIf !== rec.hostIf) throw drift(`prevResult names host veth ${exp.hostIf}, weir made ${rec.hostIf}`);
		const gw = (await podNl.neighbours()).find((n) => n.ip === GATEWAY_IP && n.ifindex === podLink.ifindex);
		if (!gw || !gw.permanent || gw.mac !== hostLink.mac) throw drift(`gateway neighbour entry is missing or not ${hostLink.mac}`);
		if (!(await this.host.routes()).some((r) => r.dst === `${rec.ip}/32` && r.ifindex === hostLink.ifindex)) {
			throw drift(`host route ${rec.ip}/32 dev ${rec.hostIf} is missing`);
		}
		if (!this.deps.datapath.isAttached(hostLink.ifindex, this.deps.hostNetns)) {
			throw drift(`datapath programs are not attached to ${rec.hostIf}`, 'expected weir_from_pod at tc ingress and weir_to_pod at tc egress');
		}
		await this.deps.ipam.exec({
			command: 'CHECK',
			type: conf.ipam.type,
			path: env.path,
			env: ipamEnv(rec, cniArgsString(env.args)),
			conf: conf.raw,
		});
		return { code: 0, stdout: '' };
	}

	private async cmdGc(conf: NetConf): Promise<CniResponse> {
		const valid = new Set((conf.validAttachments ?? []).map((a) => `${a.containerID}/${a.ifname}`));
		const stale = this.deps.store.all().filter((r) => r.network === conf.name && !valid.has(`${r.containerId}/${r.ifname}`));
		const failures: string[] = [];
		for (const r of stale) {
			try {
				await this.lock.run(`${r.containerId}/${r.ifname}`, () => this.teardown(r));
			} catch (err) {
				failures.push(`${r.containerId}/${r.ifname}: ${(err as Error).message}`);
			}
		}
		this.deps.log.info({ removed: stale.length - failures.length, network: conf.name }, 'GC');
		if (failures.length) throw new CniError(CniCode.Other, `GC could not remove ${failures.length} attachment(s)`, failures.join('; '));
		return { code: 0, stdout: '' };
	}

	private cmdStatus(): CniResponse {
		const why = this.deps.notReady();
		if (why) throw new CniError(CniCode.NotAvailable, 'weir agent is not ready', why);
		return { code: 0, stdout: '' };
	}

	/**
	 * Start-up reconciliation: records left 'adding' by a dead agent are undone; ready
	 * records whose netns or host veth is gone are removed; live ones get the current
	 * programs (pinned links updated in place, no gap). Returns what was removed.
	 */
	async reconcile(): Promise<{ kept: number; removed: string[] }> {
		const removed: string[] = [];
		let kept = 0;
		for (const r of this.deps.store.all()) {
			const link = await this.host.link(r.hostIf);
			const alive = r.state === 'ready' && !!link && existsSync(r.netns);
			if (alive) {
				try {
					this.deps.datapath.attach(link.ifindex, this.deps.hostNetns ? { netns: this.deps.hostNetns } : {});
					if (link.ifindex !== r.hostIfindex) this.deps.store.put({ ...r, hostIfindex: link.ifindex });
					kept++;
					continue;
				} catch (err) {
					this.deps.log.warn({ containerId: r.containerId, err: (err as Error).message }, 're-attach failed; removing the endpoint');
				}
			}
			try {
				await this.teardown(r);
				removed.push(`${r.containerId}/${r.ifname}`);
			} catch (err) {
				this.deps.log.error({ containerId: r.containerId, err: (err as Error).message }, 'stale endpoint not fully removed');
			}
		}
		return { kept, removed };
	}
}

export { isNativeError };
