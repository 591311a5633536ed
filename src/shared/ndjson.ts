// Newline-delimited JSON, as the observer and relay APIs stream flows: a body read
// chunk by chunk, one parsed object per non-empty line.

export async function* ndjsonLines(body: AsyncIterable<Uint8Array | string>): AsyncGenerator<Record<string, unknown>> {
	const decoder = new TextDecoder();
	let buf = '';
	for await (const chunk of body) {
		buf += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
		let nl: number;
		while ((nl = buf.indexOf('\n')) >= 0) {
			const line = buf.slice(0, nl);
			buf = buf.slice(nl + 1);
			if (line.trim()) yield JSON.parse(line) as Record<string, unknown>;
		}
	}
	if (buf.trim()) yield JSON.parse(buf) as Record<string, unknown>;
}
