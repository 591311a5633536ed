// Istio's PeerAuthentication (security.istio.io v1 and v1beta1): which connections the
// node ztunnel accepts without mutual TLS, per destination workload and port. Pure:
// compiled once from the objects as listed, read per connection.
//
// Precedence (Istio's): mesh-wide (root namespace, no selector) < namespace-wide (no
// selector) < workload (a selector matching the pod's labels), each level taking the
// oldest policy when several exist; UNSET (or no mtls) inherits the level below, and a
// workload policy's portLevelMtls entry for the destination port overrides its mode.
// Nothing at all: PERMISSIVE. In Weir's ztunnel DISABLE accepts plaintext like PERMISSIVE
// (and mTLS still works, as in Istio's ambient mode): only STRICT refuses plaintext.
import { isRecord, oldestFirst, readIstioObject, readSelector, selects, type IstioObject, type PolicyProblem } from './istio-config.js';

export type { PolicyProblem } from './istio-config.js';

export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';
type Mode = MtlsMode | 'UNSET';

const MODES: readonly Mode[] = ['STRICT', 'PERMISSIVE', 'DISABLE', 'UNSET'];

export interface CompiledPeerAuthentication {
	key: string;
	namespace: string;
	created: number | undefined;
	/** undefined: namespace-wide (mesh-wide in the root namespace) */
	selector: ReadonlyArray<readonly [string, string]> | undefined;
	mode: Mode;
	/** port -> mode */
	ports: ReadonlyMap<number, Mode>;
}

export interface CompiledPeerAuthentications {
	rootNamespace: string;
	/** the oldest mesh-wide policy */
	mesh: CompiledPeerAuthentication | undefined;
	/** per namespace: its oldest namespace-wide policy and its workload policies, oldest first */
	byNamespace: ReadonlyMap<string, { namespaceWide: CompiledPeerAuthentication | undefined; workload: readonly CompiledPeerAuthentication[] }>;
	problems: readonly PolicyProblem[];
}

export interface MtlsWorkload {
	namespace: string;
	labels: Readonly<Record<string, string>>;
	/** the destination port (the pod's port, as portLevelMtls is keyed) */
	port: number;
}

export interface MtlsDecision {
	mode: MtlsMode;
	/** 'namespace/name' of the policy that set the mode; undefined: the default */
	policy?: string;
}

/** A mode as written; what cannot be read is STRICT (fail closed), with a problem. */
function readMode(v: unknown, where: string, problem: (m: string) => void): Mode {
	if (v === undefined || v === null) return 'UNSET';
	const mode = isRecord(v) ? (v['mode'] ?? 'UNSET') : undefined;
	if (typeof mode === 'string' && MODES.includes(mode as Mode)) return mode as Mode;
	problem(`${where} ${JSON.stringify(mode ?? v)} is not {mode: STRICT|PERMISSIVE|DISABLE|UNSET}: taken as STRICT`);
	return 'STRICT';
}

function compileOne(o: IstioObject, problems: PolicyProblem[]): CompiledPeerAuthentication {
	const problem = (message: string): void => void problems.push({ policy: o.key, message });
	const spec = o.spec ?? {};
	if (!isRecord(spec)) {
		problem('spec is not an object: taken as a namespace-wide STRICT policy');
		return { key: o.key, namespace: o.namespace, created: o.created, selector: undefined, mode: 'STRICT', ports: new Map() };
	}
	for (const k of Object.keys(spec)) if (!['selector', 'mtls', 'portLevelMtls'].includes(k)) problem(`spec.${k} is not supported; ignored`);
	const sel = readSelector(spec['selector']);
	if ('error' in sel) {
		problem(`${sel.error}: taken as a namespace-wide STRICT policy`);
		return { key: o.key, namespace: o.namespace, created: o.created, selector: undefined, mode: 'STRICT', ports: new Map() };
	}
	const mode = readMode(spec['mtls'], 'spec.mtls', problem);
	const ports = new Map<number, Mode>();
	const pl = spec['portLevelMtls'];
	if (pl !== undefined && pl !== null) {
		if (!isRecord(pl)) problem('spec.portLevelMtls is not a map; ignored');
		else {
			if (!sel.labels) problem('spec.portLevelMtls needs a selector in Istio; Weir applies it to every workload the policy covers');
			for (const [p, v] of Object.entries(pl)) {
				const n = /^\d{1,5}$/.test(p) ? Number(p) : NaN;
				if (!(n >= 1 && n <= 65535)) problem(`spec.portLevelMtls key ${JSON.stringify(p)} is not a port number; ignored`);
				else ports.set(n, readMode(v, `spec.portLevelMtls.${p}`, problem));
			}
		}
	}
	return { key: o.key, namespace: o.namespace, created: o.created, selector: sel.labels, mode, ports };
}

/** Compiles PeerAuthentication objects; never throws (what cannot be read is a problem). */
export function compilePeerAuthentications(objects: readonly unknown[], opts: { rootNamespace: string }): CompiledPeerAuthentications {
	const problems: PolicyProblem[] = [];
	const compiled: Array<{ o: IstioObject; c: CompiledPeerAuthentication }> = [];
	objects.forEach((obj, i) => {
		const r = readIstioObject(obj, 'PeerAuthentication', i);
		if ('problem' in r) return void problems.push(r.problem);
		compiled.push({ o: r.object, c: compileOne(r.object, problems) });
	});
	compiled.sort((a, b) => oldestFirst(a.o, b.o));
	let mesh: CompiledPeerAuthentication | undefined;
	const byNamespace = new Map<string, { namespaceWide: CompiledPeerAuthentication | undefined; workload: CompiledPeerAuthentication[] }>();
	const nsEntry = (ns: string): { namespaceWide: CompiledPeerAuthentication | undefined; workload: CompiledPeerAuthentication[] } => {
		let e = byNamespace.get(ns);
		if (!e) byNamespace.set(ns, (e = { namespaceWide: undefined, workload: [] }));
		return e;
	};
	for (const { c } of compiled) {
		if (c.selector) {
			// With a selector: the matching workloads of its own namespace (the root namespace included).
			nsEntry(c.namespace).workload.push(c);
		} else if (c.namespace === opts.rootNamespace) {
			if (!mesh) mesh = c;
			else problems.push({ policy: c.key, message: `another mesh-wide policy, ${mesh.key}, is older and wins; ignored` });
		} else {
			const e = nsEntry(c.namespace);
			if (!e.namespaceWide) e.namespaceWide = c;
			else problems.push({ policy: c.key, message: `another namespace-wide policy, ${e.namespaceWide.key}, is older and wins; ignored` });
		}
	}
	return { rootNamespace: opts.rootNamespace, mesh, byNamespace, problems };
}

/** The policies that apply to a workload, least specific first: mesh-wide, namespace-wide, its workload policy. */
function applicable(compiled: CompiledPeerAuthentications, w: Omit<MtlsWorkload, 'port'>): CompiledPeerAuthentication[] {
	const ns = compiled.byNamespace.get(w.namespace);
	const workload = ns?.workload.find((p) => selects(p.selector!, w.labels));
	return [compiled.mesh, ns?.namespaceWide, workload].filter((p): p is CompiledPeerAuthentication => p !== undefined);
}

function decide(policies: readonly CompiledPeerAuthentication[], port: number): MtlsDecision {
	let out: MtlsDecision = { mode: 'PERMISSIVE' };
	// Least specific first; each level's port entry (only a workload policy has them, unless
	// one without a selector was written with them) overrides its own mode.
	for (const p of policies) {
		for (const mode of [p.mode, p.ports.get(port) ?? 'UNSET']) if (mode !== 'UNSET') out = { mode, policy: p.key };
	}
	return out;
}

/** The mTLS mode for connections to this workload's port, and the policy that set it. */
export function mtlsMode(compiled: CompiledPeerAuthentications, w: MtlsWorkload): MtlsDecision {
	return decide(applicable(compiled, w), w.port);
}

/** A workload's mode on every port, as a datapath holds it: one mode, and the ports that differ. */
export interface WorkloadMtls {
	/** the mode of a port no portLevelMtls entry names */
	workload: MtlsDecision;
	/** every port a portLevelMtls entry of an applicable policy names, with its mode (equal to `workload` or not) */
	ports: ReadonlyMap<number, MtlsDecision>;
}

/**
 * mtlsMode() for every port of a workload at once: `mtlsMode(c, {…w, port})` is
 * `ports.get(port) ?? workload` for every port.
 */
export function workloadMtls(compiled: CompiledPeerAuthentications, w: Omit<MtlsWorkload, 'port'>): WorkloadMtls {
	const policies = applicable(compiled, w);
	const ports = new Map<number, MtlsDecision>();
	for (const p of policies) for (const port of p.ports.keys()) if (!ports.has(port)) ports.set(port, decide(policies, port));
	// Port 0 is no port: no portLevelMtls entry names it.
	return { workload: decide(policies, 0), ports: new Map([...ports].sort(([a], [b]) => a - b)) };
}
