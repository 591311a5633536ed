// The forwarder's wire format (native/cni/weir-cni.c), pure:
//   request:  "WEIRCNI1\n", then "KEY=VALUE\0" per CNI_* variable, "\0", then stdin bytes
//   response: "<exit code>\n", then the bytes for stdout
import { CniCode, CniError } from './errors.js';

export const WIRE_MAGIC = 'WEIRCNI1\n';

export interface WireRequest {
	env: Record<string, string>;
	stdin: Buffer;
}

export function encodeRequest(req: WireRequest): Buffer {
	const parts: Buffer[] = [Buffer.from(WIRE_MAGIC)];
	for (const [k, v] of Object.entries(req.env)) parts.push(Buffer.from(`${k}=${v}\0`));
	parts.push(Buffer.from('\0'), req.stdin);
	return Buffer.concat(parts);
}

export function decodeRequest(buf: Buffer): WireRequest {
	if (buf.length < WIRE_MAGIC.length || buf.subarray(0, WIRE_MAGIC.length).toString() !== WIRE_MAGIC) {
		throw new CniError(CniCode.Decode, 'malformed request from weir-cni', 'bad magic (is weir-cni the same version as the agent?)');
	}
	const env: Record<string, string> = {};
	let off = WIRE_MAGIC.length;
	for (;;) {
		const end = buf.indexOf(0, off);
		if (end < 0) throw new CniError(CniCode.Decode, 'malformed request from weir-cni', 'unterminated environment');
		if (end === off) {
			off = end + 1;
			break;
		}
		const kv = buf.subarray(off, end).toString();
		const eq = kv.indexOf('=');
		if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
		off = end + 1;
	}
	return { env, stdin: buf.subarray(off) };
}

export function encodeResponse(code: number, stdout: string): Buffer {
	return Buffer.from(`${code}\n${stdout}`);
}

export function decodeResponse(buf: Buffer): { code: number; stdout: string } {
	const nl = buf.indexOf(10);
	if (nl < 0) throw new Error('malformed response');
	return { code: Number(buf.subarray(0, nl).toString()), stdout: buf.subarray(nl + 1).toString() };
}
