// Processes of the capture lab (test/kernel/ztunnel-capture.test.ts), each its own
// Node process in a lab namespace:
//   ztunnel-lab.js ztunnel '{"proxyPorts":[8080]}'   in the node namespace: the capture
//       listener (src/ztunnel/capture.ts). Prints one JSON line per event: ready,
//       captured {src, dst}; a connection to a proxy port is relayed to its original
//       destination over a marked connection (upstream {local}), any other one is
//       answered "captured <dst> from <src>\n" and echoed. Reads JSON commands on stdin:
//       {"cmd":"deliver","id","source","address","port"} connects from a foreign source
//       and prints delivered {id, line} (the first line the peer sent) or failed {id, error}.
//   ztunnel-lab.js whoami <port>                     in a pod: answers "peer <ip>:<port>\n", then echoes
//   ztunnel-lab.js client <ip> <port> <payload> <timeoutMs> [repeat]
//       in a pod: connects, sends the payload (repeated), prints {ok, data (its start), bytes} once it came
//       back (or {ok: false, error} on error or timeout)
import { Socket, connect, createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { CaptureListener, connectTransparent } from '../../src/ztunnel/capture.js';

const [mode, ...args] = process.argv.slice(2);
const out = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

function firstLine(s: Socket, timeoutMs: number): Promise<string> {
	return new Promise((resolve, reject) => {
		let buf = '';
		const timer = setTimeout(() => reject(new Error('timeout')), timeoutMs);
		s.on('data', (d: Buffer) => {
			buf += d.toString();
			const nl = buf.indexOf('\n');
			if (nl >= 0) {
				clearTimeout(timer);
				resolve(buf.slice(0, nl));
			}
		});
		s.on('error', (e) => {
			clearTimeout(timer);
			reject(e);
		});
	});
}

if (mode === 'ztunnel') {
	const { proxyPorts } = JSON.parse(args[0] ?? '{}') as { proxyPorts?: number[] };
	await CaptureListener.open((c) => {
		const { socket, source, originalDestination: dst } = c;
		out({ event: 'captured', src: source, dst });
		if (proxyPorts?.includes(dst.port)) {
			socket.pause();
			connectTransparent({ source: '0.0.0.0', destination: dst }).then(
				(up) => {
					up.on('error', () => socket.destroy());
					socket.on('close', () => up.destroy());
					up.on('close', () => socket.destroy());
					out({ event: 'upstream', dst, local: { address: up.localAddress, port: up.localPort } });
					socket.pipe(up).pipe(socket);
					socket.resume();
				},
				(err: Error) => {
					out({ event: 'upstream-failed', dst, error: err.message });
					socket.destroy();
				},
			);
			return;
		}
		socket.write(`captured ${dst.address}:${dst.port} from ${source.address}\n`);
		socket.pipe(socket);
	});
	out({ event: 'ready', pid: process.pid });
	createInterface({ input: process.stdin }).on('line', (line) => {
		const cmd = JSON.parse(line) as { cmd: string; id: number; source: string; address: string; port: number };
		if (cmd.cmd !== 'deliver') return;
		connectTransparent({ source: cmd.source, destination: { address: cmd.address, port: cmd.port }, timeoutMs: 2000 })
			.then(async (s) => {
				const l = await firstLine(s, 2000);
				s.destroy();
				out({ event: 'delivered', id: cmd.id, line: l });
			})
			.catch((err: Error & { code?: string; op?: string }) => out({ event: 'failed', id: cmd.id, error: err.message, code: err.code, op: err.op }));
	});
} else if (mode === 'whoami') {
	createServer((s) => {
		s.on('error', () => undefined);
		s.write(`peer ${s.remoteAddress}:${s.remotePort}\n`);
		s.pipe(s);
	}).listen({ port: Number(args[0]), host: '0.0.0.0' }, () => process.stdout.write('listening\n'));
} else if (mode === 'client') {
	const [ip, port, text, timeoutMs, repeat] = args as [string, string, string, string, string | undefined];
	const payload = text.repeat(Number(repeat ?? 1));
	let data = '';
	const done = (o: object): never => {
		out(o);
		process.exit(0);
	};
	setTimeout(() => done({ ok: false, error: 'timeout', data: data.slice(0, 512), bytes: data.length }), Number(timeoutMs));
	const s = connect({ host: ip, port: Number(port) });
	s.on('connect', () => s.write(payload));
	s.on('data', (d: Buffer) => {
		data += d.toString();
		// The first 512 characters, and the size: a pipe may not take megabytes before exit.
		if (data.endsWith(payload)) done({ ok: true, data: data.slice(0, 512), bytes: data.length, local: `${s.localAddress}:${s.localPort}` });
	});
	s.on('error', (e) => done({ ok: false, error: e.message, data: data.slice(0, 512), bytes: data.length }));
} else {
	process.stderr.write('usage: ztunnel-lab.js ztunnel|whoami|client ...\n');
	process.exit(64);
}
