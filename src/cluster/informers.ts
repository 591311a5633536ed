// Kubernetes watches: @kubernetes/client-node informers, each supervised. An informer
// that fails (API server gone, auth error, dropped watch) keeps its cache and is
// restarted with jittered exponential backoff; a 410 (resource version too old) makes
// the informer relist by itself. `synced` resolves once the informer listed once. A
// kind that may not be served at all (a CRD not installed) is watched with
// `mayBeAbsent`: its 404 is logged once and retried quietly with a longer backoff, and
// `settled` resolves on the first list, the first 404, or when it has not listed for
// `settleAfterMs`: from then on its consumer may take "not listed" as "none".
import * as k8s from '@kubernetes/client-node';

export interface WatchLogger {
	info(obj: object, msg: string): void;
	warn(obj: object, msg: string): void;
}

export interface BackoffOptions {
	initialMs: number;
	maxMs: number;
	/** 0..1: each delay is multiplied by a random factor in [1 - jitter, 1 + jitter] */
	jitter: number;
}

// Capped low: when the API server comes back, changes must reach the datapath within seconds.
export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 4_000, jitter: 0.3 };

export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
	const base = Math.min(o.maxMs, o.initialMs * 2 ** Math.max(0, attempt));
	return Math.round(base * (1 - o.jitter + 2 * o.jitter * random()));
}

export type ListFn<T extends k8s.KubernetesObject> = () => Promise<k8s.KubernetesListObject<T>>;

export interface InformerOptions {
	/**
	 * The kind may not be served (its CRD absent): a 404 is no failure but "none of
	 * these", logged once (info) and retried every `absentMaxMs` at most, so that the
	 * watch finds the CRD when it is created.
	 */
	mayBeAbsent?: boolean;
	/** the backoff's cap while the kind answers 404 (default 30 s) */
	absentMaxMs?: number;
	/**
	 * With `mayBeAbsent`: a 404 settles the watch at once; another failure (RBAC not
	 * applied, the API server erring) only this long after the first start (default
	 * 10 s), so that a transient error does not pass for "none".
	 */
	settleAfterMs?: number;
}

/** Whether an informer error is the API server's 404 (list: ApiException.code; watch: statusCode). */
export function isNotFound(err: unknown): boolean {
	const e = err as { code?: unknown; statusCode?: unknown } | null;
	return typeof e === 'object' && e !== null && (e.code === 404 || e.statusCode === 404);
}

/** One resource kind under watch. */
export class SupervisedInformer<T extends k8s.KubernetesObject> {
	readonly informer: k8s.Informer<T> & k8s.ObjectCache<T>;
	private attempt = 0;
	private timer: NodeJS.Timeout | undefined;
	private stopped = false;
	private syncedOnce = false;
	/** failures so far: an attempt during which one happened has not synced */
	private failures = 0;
	private resolveSynced!: () => void;
	private resolveSettled!: () => void;
	private settledOnce = false;
	private settleTimer: NodeJS.Timeout | undefined;
	/** resolves after the first successful list */
	readonly synced: Promise<void>;
	/** resolves when the first attempt ended: listed, or failed (then retried) */
	readonly settled: Promise<void>;
	/** last error, for status */
	lastError: string | undefined;
	/** the last attempt was answered 404: the kind is not served (its CRD absent) */
	absent = false;
	restarts = 0;

	constructor(
		readonly name: string,
		kc: k8s.KubeConfig,
		path: string,
		list: ListFn<T>,
		private readonly log: WatchLogger,
		private readonly onChange: () => void,
		private readonly backoff: BackoffOptions = DEFAULT_BACKOFF,
		private readonly options: InformerOptions = {},
	) {
		this.synced = new Promise((r) => (this.resolveSynced = r));
		this.settled = new Promise((r) => (this.resolveSettled = r));
		this.informer = k8s.makeInformer<T>(kc, path, list);
		for (const verb of [k8s.ADD, k8s.UPDATE, k8s.DELETE] as const) this.informer.on(verb, () => this.onChange());
		this.informer.on(k8s.ERROR, (err: unknown) => this.failed(err));
	}

	start(): void {
		this.stopped = false;
		if (this.options.mayBeAbsent && !this.settledOnce && !this.settleTimer) {
			const ms = this.options.settleAfterMs ?? 10_000;
			this.settleTimer = setTimeout(() => {
				this.log.warn({ watch: this.name, err: this.lastError, afterMs: ms }, 'not listed yet: taken as none until it is');
				this.settle(true);
			}, ms);
			this.settleTimer.unref();
		}
		const failuresBefore = this.failures;
		this.informer.start().then(
			() => {
				// client-node reports a failed list (or watch request) through ERROR and
				// still resolves start(): that attempt has not synced, failed() retries it.
				if (this.stopped || this.failures !== failuresBefore) return;
				this.attempt = 0;
				this.lastError = undefined;
				this.absent = false;
				if (!this.syncedOnce) {
					this.syncedOnce = true;
					this.log.info({ watch: this.name }, 'watch synced');
					this.resolveSynced();
				}
				this.settle(false);
				this.onChange();
			},
			(err: unknown) => this.failed(err),
		);
	}

	/** The first attempt is over; `notify`: tell the consumer (a failure calls no onChange of its own). */
	private settle(notify: boolean): void {
		clearTimeout(this.settleTimer);
		if (this.settledOnce) return;
		this.settledOnce = true;
		this.resolveSettled();
		if (notify) this.onChange();
	}

	private failed(err: unknown): void {
		if (this.stopped) return;
		this.failures++;
		const message = describe(err);
		this.lastError = message;
		const absent = this.options.mayBeAbsent === true && isNotFound(err);
		const backoff = absent ? { ...this.backoff, maxMs: Math.max(this.backoff.maxMs, this.options.absentMaxMs ?? 30_000) } : this.backoff;
		const delay = backoffDelay(this.attempt++, backoff);
		if (!absent) this.log.warn({ watch: this.name, err: message, retryInMs: delay }, 'watch failed; keeping the last state and retrying');
		else if (!this.absent)
			this.log.info(
				{ watch: this.name, retryInMs: delay },
				'not served by the API server (404: its CRD is not installed): taken as none, retried quietly until it is',
			);
		this.absent = absent;
		if (absent) this.settle(true);
		clearTimeout(this.timer);
		this.timer = setTimeout(() => {
			this.restarts++;
			this.start();
		}, delay);
		this.timer.unref();
	}

	get isSynced(): boolean {
		return this.syncedOnce;
	}

	get isSettled(): boolean {
		return this.settledOnce;
	}

	list(): readonly T[] {
		return this.informer.list();
	}

	async stop(): Promise<void> {
		this.stopped = true;
		clearTimeout(this.timer);
		clearTimeout(this.settleTimer);
		await this.informer.stop();
	}
}

function describe(err: unknown): string {
	if (err instanceof Error) return err.message || err.name;
	if (typeof err === 'object' && err !== null) {
		const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
		return String(e.message ?? e.code ?? e.statusCode ?? JSON.stringify(err));
	}
	return String(err);
}
