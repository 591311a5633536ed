// A raw HTTP/2 client for abuse tests: frames written by hand over a TLS socket, with
// none of a real client's manners (it ignores SETTINGS_MAX_CONCURRENT_STREAMS, resets
// streams as fast as it opens them, sends header blocks of any size). Header blocks are
// HPACK literals without indexing or Huffman coding (RFC 7541 §6.2.2), which every
// decoder must accept; what the server sends back is parsed into frames, not decoded.
import type { TLSSocket } from 'node:tls';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
/** RFC 9113 §7 error codes */
export const H2_ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export interface Frame {
	type: number;
	flags: number;
	stream: number;
	payload: Buffer;
}

/** HPACK integer with an n-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, first: number): number[] {
	const max = (1 << prefixBits) - 1;
	if (value < max) return [first | value];
	const out = [first | max];
	let v = value - max;
	while (v >= 128) {
		out.push((v % 128) + 128);
		v = Math.floor(v / 128);
	}
	out.push(v);
	return out;
}

/** A header block of literals without indexing, new names, no Huffman. */
export function hpackLiterals(headers: [string, string][]): Buffer {
	const parts: Buffer[] = [];
	for (const [name, value] of headers) {
		const n = Buffer.from(name);
		const v = Buffer.from(value);
		parts.push(Buffer.from([0x00, ...hpackInt(n.length, 7, 0)]), n, Buffer.from(hpackInt(v.length, 7, 0)), v);
	}
	return Buffer.concat(parts);
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
	const h = Buffer.alloc(9);
	h.writeUIntBE(payload.length, 0, 3);
	h[3] = type;
	h[4] = flags;
	h.writeUInt32BE(stream & 0x7fffffff, 5);
	return Buffer.concat([h, payload]);
}

/** An HBONE CONNECT's header block. */
export function connectHeaders(authority: string, clientIp: string, extra: [string, string][] = []): [string, string][] {
	return [[':method', 'CONNECT'], [':authority', authority], ['forwarded', `for=${clientIp}`], ...extra];
}

export class RawH2 {
	readonly frames: Frame[] = [];
	private buf = Buffer.alloc(0);
	private nextStream = 1;
	closed = false;

	/** Writes the preface and an empty SETTINGS on a TLS socket that negotiated h2; ACKs the server's SETTINGS unless told not to. */
	constructor(
		readonly socket: TLSSocket,
		readonly o: { ackSettings?: boolean } = {},
	) {
		socket.on('data', (d: Buffer) => this.read(d));
		socket.on('close', () => (this.closed = true));
		socket.on('error', () => undefined);
		socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
	}

	private read(d: Buffer): void {
		this.buf = Buffer.concat([this.buf, d]);
		while (this.buf.length >= 9) {
			const len = this.buf.readUIntBE(0, 3);
			if (this.buf.length < 9 + len) break;
			const f: Frame = { type: this.buf[3]!, flags: this.buf[4]!, stream: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) };
			this.buf = this.buf.subarray(9 + len);
			this.frames.push(f);
			if (f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK) && this.o.ackSettings !== false) this.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
		}
	}

	write(b: Buffer): void {
		if (!this.closed && !this.socket.destroyed) this.socket.write(b);
	}

	/** Opens a stream with `headers` (split into CONTINUATION frames of `chunk` bytes); returns its id. */
	open(headers: [string, string][], o: { chunk?: number; endStream?: boolean } = {}): number {
		const id = this.nextStream;
		this.nextStream += 2;
		const block = hpackLiterals(headers);
		const chunk = o.chunk ?? 16_384;
		const out: Buffer[] = [];
		for (let off = 0; off < block.length || off === 0; off += chunk) {
			const last = off + chunk >= block.length;
			const part = block.subarray(off, off + chunk);
			const flags = (last ? FLAG.END_HEADERS : 0) | (off === 0 && o.endStream ? FLAG.END_STREAM : 0);
			out.push(frame(off === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, flags, id, part));
			if (last) break;
		}
		this.write(Buffer.concat(out));
		return id;
	}

	rst(stream: number, code: number = H2_ERROR.CANCEL): void {
		const p = Buffer.alloc(4);
		p.writeUInt32BE(code);
		this.write(frame(FRAME.RST_STREAM, 0, stream, p));
	}

	/** RST_STREAM codes the server sent, by stream. */
	resets(): Map<number, number> {
		return new Map(this.frames.filter((f) => f.type === FRAME.RST_STREAM).map((f) => [f.stream, f.payload.readUInt32BE(0)]));
	}

	/** Streams the server answered with a HEADERS frame. */
	answered(): Set<number> {
		return new Set(this.frames.filter((f) => f.type === FRAME.HEADERS).map((f) => f.stream));
	}

	/** The server's GOAWAY, if any: last stream id and error code. */
	goaway(): { lastStream: number; code: number; debug: string } | undefined {
		const f = this.frames.find((x) => x.type === FRAME.GOAWAY);
		if (!f) return undefined;
		return { lastStream: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4), debug: f.payload.subarray(8).toString() };
	}
}
