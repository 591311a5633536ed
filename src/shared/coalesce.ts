// Bursts of changes coalesced into one run: the controllers' "something changed,
// compile soon" (a watch relist delivers hundreds of events in one tick).

export class Coalescer {
	private timer: NodeJS.Timeout | undefined;

	constructor(
		private readonly run: () => void,
		private readonly delayMs = 10,
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
