// Sample statistics for the benchmarks' printed figures.

/** The p-th percentile by nearest rank (NaN for no samples). */
export function pct(xs: number[], p: number): number {
	const s = [...xs].sort((a, b) => a - b);
	if (s.length === 0) return NaN;
	return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** "p50 12.3 ms, p99 45.6 ms, max 78.9 ms" */
export function spread(ms: number[]): string {
	return `p50 ${pct(ms, 50).toFixed(1)} ms, p99 ${pct(ms, 99).toFixed(1)} ms, max ${Math.max(...ms).toFixed(1)} ms`;
}
