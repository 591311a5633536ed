// The datapath stamps events with CLOCK_MONOTONIC; flows carry wall-clock time.

/** Maps CLOCK_MONOTONIC ns (the datapath's clock) to wall-clock ms, from one reading now. */
export function monoToWallClock(): (monoNs: bigint) => number {
	const offsetMs = Date.now() - Number(process.hrtime.bigint() / 1_000_000n);
	return (monoNs) => offsetMs + Number(monoNs / 1_000_000n);
}
