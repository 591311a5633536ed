// The workload CA: its root (a Secret in Weir's namespace, made once, create-if-absent so
// that two controllers starting together end up with the same root), the trust bundle
// it publishes (a ConfigMap the node ztunnels read), and the signing decision:
// authenticated ztunnel → node → a pod of the requested identity on that node → a
// short-lived certificate for it.
import type { Logger } from 'pino';
import { formatSpiffeId, parseSpiffeId, SpiffeIdError } from '../identity/spiffe.js';
import { callerFromReview, type Caller } from './authn.js';
import { checkCsr } from './csr.js';
import { CaError } from './errors.js';
import { createRoot, issueWorkloadCert, loadRoot, type CaRoot } from './issue.js';
import type { CaCluster } from './ports.js';

export const CA_DEFAULTS = {
	rootSecret: 'weir-ca-root',
	bundleConfigMap: 'weir-trust-bundle',
	ztunnelServiceAccount: 'weir-ztunnel',
	audience: 'weir-ca',
	certTtlMs: 24 * 3600_000,
	port: 15012,
} as const;

export interface CaOptions {
	cluster: CaCluster;
	trustDomain: string;
	/** Weir's namespace: the root Secret, the bundle ConfigMap, the ztunnel ServiceAccount */
	namespace: string;
	ztunnelServiceAccount: string;
	audience: string;
	certTtlMs: number;
	rootSecret?: string;
	bundleConfigMap?: string;
	log: Logger;
	now?: () => number;
}

export interface SignRequest {
	csr: string;
	identity: string;
}

export interface SignResponse {
	identity: string;
	certChain: string[];
	trustBundle: string[];
	notBefore: string;
	notAfter: string;
}

/** Pods in these phases no longer run: they do not vouch for their identity on the node. */
const ENDED = new Set(['Succeeded', 'Failed']);

export class WorkloadCa {
	private root: CaRoot | undefined;
	private readonly now: () => number;

	constructor(private readonly o: CaOptions) {
		this.now = o.now ?? Date.now;
	}

	get ready(): boolean {
		return this.root !== undefined;
	}

	rootCert(): CaRoot {
		if (!this.root) throw new CaError('WEIR_ERR_CA_NOT_READY', 503, 'the CA has not loaded its root yet (see the controller log)');
		return this.root;
	}

	trustBundle(): string[] {
		return [this.rootCert().certPem];
	}

	/** Loads the root, or creates it when the Secret is absent, then publishes the trust bundle. */
	async init(): Promise<CaRoot> {
		const { cluster, namespace } = this.o;
		const secret = this.o.rootSecret ?? CA_DEFAULTS.rootSecret;
		const log = this.o.log;
		let data = await cluster.readSecret(namespace, secret);
		if (!data) {
			const fresh = await createRoot(this.o.trustDomain, this.now());
			const created = await cluster.createSecretIfAbsent(namespace, secret, { 'ca.crt': fresh.certPem, 'ca.key': fresh.keyPem });
			if (created) {
				log.info({ secret: `${namespace}/${secret}`, notAfter: fresh.cert.notAfter.toISOString() }, 'created the CA root');
				this.root = fresh;
			} else {
				// Another controller created it between our read and our create: use theirs.
				log.info({ secret: `${namespace}/${secret}` }, 'the CA root was created by another controller; loading it');
				data = await cluster.readSecret(namespace, secret);
				if (!data) throw new CaError('WEIR_ERR_CA_ROOT_INVALID', 500, `the CA root Secret ${namespace}/${secret} exists but cannot be read`);
			}
		}
		if (!this.root) {
			const crt = data?.['ca.crt'];
			const key = data?.['ca.key'];
			if (!crt || !key) {
				throw new CaError('WEIR_ERR_CA_ROOT_INVALID', 500, `the CA root Secret ${namespace}/${secret} lacks ca.crt or ca.key; fix or delete it`);
			}
			this.root = await loadRoot(crt, key, this.now());
			log.info({ secret: `${namespace}/${secret}`, notAfter: this.root.cert.notAfter.toISOString() }, 'loaded the CA root');
		}
		const bundle = this.o.bundleConfigMap ?? CA_DEFAULTS.bundleConfigMap;
		await cluster.publishConfigMap(namespace, bundle, { 'ca.crt': this.root.certPem, 'trust-domain': this.o.trustDomain });
		log.info({ configMap: `${namespace}/${bundle}` }, 'published the trust bundle');
		return this.root;
	}

	private async api<T>(what: string, f: () => Promise<T>): Promise<T> {
		try {
			return await f();
		} catch (err) {
			throw new CaError('WEIR_ERR_CA_API_UNAVAILABLE', 503, `the CA cannot ${what} through the API server (${(err as Error).message}); retry later`, {
				cause: err,
			});
		}
	}

	/** Who the token belongs to, and which node it runs on. */
	async authenticate(token: string | undefined): Promise<Caller & { nodeName: string }> {
		if (!token) throw new CaError('WEIR_ERR_CA_NO_TOKEN', 401, 'no ServiceAccount token (send "Authorization: Bearer <projected token>")');
		const status = await this.api('review the token', () => this.o.cluster.reviewToken(token, [this.o.audience]));
		const caller = callerFromReview(status, this.o.audience, { namespace: this.o.namespace, serviceAccount: this.o.ztunnelServiceAccount });
		if (caller.nodeName) return { ...caller, nodeName: caller.nodeName };
		// Older API servers put no node in the token: the bound pod says where it runs.
		const pod = await this.api('read the ztunnel pod', () => this.o.cluster.pod(caller.namespace, caller.podName));
		if (!pod || pod.uid !== caller.podUid || !pod.nodeName) {
			throw new CaError('WEIR_ERR_CA_TOKEN_NOT_POD_BOUND', 403, `the token's pod ${caller.namespace}/${caller.podName} is gone or not on a node`);
		}
		return { ...caller, nodeName: pod.nodeName };
	}

	/** The whole decision; throws a CaError for every refusal. */
	async sign(token: string | undefined, req: SignRequest): Promise<SignResponse & { caller: Caller & { nodeName: string } }> {
		const root = this.rootCert();
		const caller = await this.authenticate(token);
		try {
			return await this.decide(root, caller, req);
		} catch (err) {
			if (err instanceof CaError) err.context = { node: caller.nodeName, ztunnel: `${caller.namespace}/${caller.podName}` };
			throw err;
		}
	}

	private async decide(
		root: CaRoot,
		caller: Caller & { nodeName: string },
		req: SignRequest,
	): Promise<SignResponse & { caller: Caller & { nodeName: string } }> {
		let id;
		try {
			id = parseSpiffeId(req.identity, this.o.trustDomain);
		} catch (err) {
			if (err instanceof SpiffeIdError)
				throw new CaError('WEIR_ERR_CA_BAD_IDENTITY', 400, `the requested identity is not a workload SPIFFE ID of this trust domain: ${err.message}`);
			throw err;
		}
		const identity = formatSpiffeId(id);
		const { publicKey } = await checkCsr(req.csr, identity);
		const pods = await this.api('list the pods of the node', () => this.o.cluster.podsOnNode(id.namespace, caller.nodeName));
		const running = pods.filter((p) => p.nodeName === caller.nodeName && p.serviceAccount === id.serviceAccount && !ENDED.has(p.phase));
		if (running.length === 0) {
			throw new CaError(
				'WEIR_ERR_CA_NO_POD_ON_NODE',
				403,
				`no pod of ServiceAccount ${id.namespace}/${id.serviceAccount} runs on node ${caller.nodeName}: a ztunnel gets certificates only for the workloads of its own node`,
			);
		}
		const issued = await issueWorkloadCert(root, publicKey, identity, this.o.certTtlMs, this.now());
		return {
			identity,
			certChain: [issued.pem],
			trustBundle: [root.certPem],
			notBefore: issued.cert.notBefore.toISOString(),
			notAfter: issued.cert.notAfter.toISOString(),
			caller,
		};
	}
}
