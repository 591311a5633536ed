// Bursts of changes coalesced into one run: the controllers' "something changed,
// compile soon" (a watch relist delivers hundreds of events in one tick).

/**
 * How long after the first change of a burst the run starts, unless a controller is
 * given another delay. The agent's policy and service controllers use it: a watch
 * event reaches the maps one delay plus one run after it arrives (no periodic resync).
 */
export const COALESCE_DELAY_MS = 10;

export class Coalescer {
	private timer: NodeJS.Timeout | undefined;

	constructor(
		private readonly run: () => void,
		private readonly delayMs = COALESCE_DELAY_MS,
	) {}

	/** Runs `run` once, `delayMs` from the first call of a burst. */
	schedule(): void {
		if (this.timer) return;
		this.timer = setTimeout(() => {
			this.timer = undefined;
			this.run();
		}, this.delayMs);
	}

	cancel(): void {
		clearTimeout(this.timer);
		this.timer = undefined;
	}
}
