// Kubernetes watches: @kubernetes/client-node informers, each supervised. An informer
// that fails (API server gone, auth error, dropped watch) keeps its cache and is
// restarted with jittered exponential backoff; a 410 (resource version too old) makes
// the informer relist by itself. `synced` resolves once the informer listed once.
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
	/** resolves after the first successful list */
	readonly synced: Promise<void>;
	/** last error, for status */
	lastError: string | undefined;
	restarts = 0;

	constructor(
		readonly name: string,
		kc: k8s.KubeConfig,
		path: string,
		list: ListFn<T>,
		private readonly log: WatchLogger,
		private readonly onChange: () => void,
		private readonly backoff: BackoffOptions = DEFAULT_BACKOFF,
	) {
		this.synced = new Promise((r) => (this.resolveSynced = r));
		this.informer = k8s.makeInformer<T>(kc, path, list);
		for (const verb of [k8s.ADD, k8s.UPDATE, k8s.DELETE] as const) this.informer.on(verb, () => this.onChange());
		this.informer.on(k8s.ERROR, (err: unknown) => this.failed(err));
	}

	start(): void {
		this.stopped = false;
		const failuresBefore = this.failures;
		this.informer.start().then(
			() => {
				// client-node reports a failed list (or watch request) through ERROR and
				// still resolves start(): that attempt has not synced, failed() retries it.
				if (this.stopped || this.failures !== failuresBefore) return;
				this.attempt = 0;
				this.lastError = undefined;
				if (!this.syncedOnce) {
					this.syncedOnce = true;
					this.log.info({ watch: this.name }, 'watch synced');
					this.resolveSynced();
				}
				this.onChange();
			},
			(err: unknown) => this.failed(err),
		);
	}

	private failed(err: unknown): void {
		if (this.stopped) return;
		this.failures++;
		const message = describe(err);
		this.lastError = message;
		const delay = backoffDelay(this.attempt++, this.backoff);
		this.log.warn({ watch: this.name, err: message, retryInMs: delay }, 'watch failed; keeping the last state and retrying');
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

	list(): readonly T[] {
		return this.informer.list();
	}

	async stop(): Promise<void> {
		this.stopped = true;
		clearTimeout(this.timer);
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
