// The ztunnel's certificates: one per ServiceAccount with a pod on the node, each with
// a key pair made here (the private key never leaves the process; a new one per
// certificate), signed by the CA through the CaClient interface. Renewed at half-life;
// a failed request is retried with exponential backoff and jitter, and the old
// certificate keeps being served while it is valid. Time comes from an injected clock,
// so tests drive rotation without waiting.
import type { Logger } from 'pino';
import type { CaClient } from './ca-client.js';
import { createCsr } from './csr.js';
import { formatSpiffeId, type SpiffeId } from './spiffe.js';
import { generateKeyPair, privateKeyPem, subtle, x509 } from './x509.js';

export interface Clock {
	now(): number;
	setTimeout(fn: () => void, ms: number): unknown;
	clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
	now: () => Date.now(),
	setTimeout: (fn, ms) => {
		const t = setTimeout(fn, ms);
		t.unref();
		return t;
	},
	clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface WorkloadCertificate {
	identity: string;
	/** leaf first, PEM */
	certChain: string[];
	/** PKCS#8 PEM; stays in this process */
	keyPem: string;
	trustBundle: string[];
	notBefore: number;
	notAfter: number;
}

export interface Backoff {
	initialMs: number;
	maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 1_000, maxMs: 5 * 60_000 };

export interface CertManagerOptions {
	ca: CaClient;
	clock?: Clock;
	/** [0, 1) */
	random?: () => number;
	backoff?: Backoff;
	log?: Logger;
}

export type CertStatus = 'pending' | 'ready' | 'backoff';

export interface CertState {
	identity: string;
	status: CertStatus;
	/** consecutive failed requests */
	failures: number;
	/** when the next request is due (epoch ms) */
	nextAttemptAt: number | undefined;
	lastError: string | undefined;
	/** the certificate served now, if one is valid */
	current: WorkloadCertificate | undefined;
}

interface Entry {
	identity: string;
	id: SpiffeId;
	current: WorkloadCertificate | undefined;
	failures: number;
	timer: unknown;
	nextAttemptAt: number | undefined;
	lastError: string | undefined;
	inflight: Promise<void> | undefined;
	removed: boolean;
}

/** When a certificate valid from `notBefore` to `notAfter` is renewed: at half its life. */
export function renewAt(notBefore: number, notAfter: number): number {
	return notBefore + Math.floor((notAfter - notBefore) / 2);
}

/** Delay before retry number `failures` (1 = after the first failure): exponential, capped, the upper half jittered. */
export function backoffDelay(failures: number, b: Backoff, random: () => number): number {
	const d = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(failures - 1, 30));
	return Math.round(d / 2 + random() * (d / 2));
}

export class CertificateManager {
	private readonly entries = new Map<string, Entry>();
	private readonly listeners: ((identity: string, cert: WorkloadCertificate | undefined) => void)[] = [];
	private readonly clock: Clock;
	private readonly random: () => number;
	private readonly backoff: Backoff;
	private stopped = false;

	constructor(private readonly o: CertManagerOptions) {
		this.clock = o.clock ?? systemClock;
		this.random = o.random ?? Math.random;
		this.backoff = o.backoff ?? DEFAULT_BACKOFF;
	}

	/** Called with each new certificate, and with undefined when an identity is dropped. */
	onChange(listener: (identity: string, cert: WorkloadCertificate | undefined) => void): void {
		this.listeners.push(listener);
	}

	/** The identities the node needs (one per ServiceAccount with a pod here): new ones are requested now, absent ones dropped. */
	setIdentities(ids: readonly SpiffeId[]): void {
		if (this.stopped) return;
		const want = new Map(ids.map((id) => [formatSpiffeId(id), id]));
		for (const [identity, e] of this.entries) {
			if (want.has(identity)) continue;
			e.removed = true;
			this.clock.clearTimeout(e.timer);
			this.entries.delete(identity);
			this.o.log?.info({ identity }, 'no pod of this identity on the node any more: certificate dropped');
			this.emit(identity, undefined);
		}
		for (const [identity, id] of want) {
			if (this.entries.has(identity)) continue;
			const e: Entry = {
				identity,
				id,
				current: undefined,
				failures: 0,
				timer: undefined,
				nextAttemptAt: undefined,
				lastError: undefined,
				inflight: undefined,
				removed: false,
			};
			this.entries.set(identity, e);
			this.schedule(e, 0);
		}
	}

	/** The certificate to serve for `identity` now: the newest one still valid, else undefined. */
	get(identity: string): WorkloadCertificate | undefined {
		const cur = this.entries.get(identity)?.current;
		const now = this.clock.now();
		return cur && cur.notAfter > now ? cur : undefined;
	}

	state(identity: string): CertState | undefined {
		const e = this.entries.get(identity);
		if (!e) return undefined;
		const current = this.get(identity);
		return {
			identity,
			status: e.failures > 0 ? 'backoff' : current ? 'ready' : 'pending',
			failures: e.failures,
			nextAttemptAt: e.nextAttemptAt,
			lastError: e.lastError,
			current,
		};
	}

	identities(): string[] {
		return [...this.entries.keys()];
	}

	/** Resolves when no request is in flight (tests: after advancing the clock). */
	async settled(): Promise<void> {
		for (;;) {
			const busy = [...this.entries.values()].map((e) => e.inflight).filter((p): p is Promise<void> => p !== undefined);
			if (!busy.length) return;
			await Promise.all(busy);
		}
	}

	stop(): void {
		this.stopped = true;
		for (const e of this.entries.values()) {
			e.removed = true;
			this.clock.clearTimeout(e.timer);
		}
		this.entries.clear();
	}

	private emit(identity: string, cert: WorkloadCertificate | undefined): void {
		for (const l of this.listeners) l(identity, cert);
	}

	private schedule(e: Entry, delayMs: number): void {
		this.clock.clearTimeout(e.timer);
		e.nextAttemptAt = this.clock.now() + delayMs;
		e.timer = this.clock.setTimeout(() => {
			e.timer = undefined;
			e.inflight = this.attempt(e).finally(() => {
				e.inflight = undefined;
			});
		}, delayMs);
	}

	private async attempt(e: Entry): Promise<void> {
		let cert: WorkloadCertificate;
		try {
			cert = await this.request(e.identity, e.id);
		} catch (err) {
			if (e.removed) return;
			e.failures++;
			e.lastError = (err as Error).message;
			const delay = backoffDelay(e.failures, this.backoff, this.random);
			const still = this.get(e.identity);
			this.o.log?.warn(
				{
					identity: e.identity,
					failures: e.failures,
					retryInMs: delay,
					code: (err as { code?: string }).code,
					servingUntil: still ? new Date(still.notAfter).toISOString() : undefined,
				},
				`certificate request failed: ${e.lastError}${still ? '; the current certificate is kept while valid' : ''}`,
			);
			this.schedule(e, delay);
			return;
		}
		if (e.removed) return;
		e.current = cert;
		e.failures = 0;
		e.lastError = undefined;
		const at = renewAt(cert.notBefore, cert.notAfter);
		this.o.log?.info(
			{ identity: e.identity, notAfter: new Date(cert.notAfter).toISOString(), renewAt: new Date(at).toISOString() },
			'workload certificate issued',
		);
		this.schedule(e, Math.max(0, at - this.clock.now()));
		this.emit(e.identity, cert);
	}

	private async request(identity: string, id: SpiffeId): Promise<WorkloadCertificate> {
		const keys = await generateKeyPair();
		const signed = await this.o.ca.sign(await createCsr(keys, id), identity);
		const leaf = new x509.X509Certificate(signed.certChain[0]!);
		const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.map((n) => `${n.type}:${n.value}`) ?? [];
		if (san.length !== 1 || san[0] !== `url:${identity}`) throw new Error(`the CA signed a certificate for ${san.join(', ') || 'no name'}, not ${identity}`);
		const ours = Buffer.from(await subtle.exportKey('spki', keys.publicKey));
		if (!ours.equals(Buffer.from(leaf.publicKey.rawData))) throw new Error('the CA signed a certificate for another key');
		return {
			identity,
			certChain: signed.certChain,
			keyPem: await privateKeyPem(keys.privateKey),
			trustBundle: signed.trustBundle,
			notBefore: leaf.notBefore.getTime(),
			notAfter: leaf.notAfter.getTime(),
		};
	}
}
