// Tiny traffic tool run inside pod namespaces by the tests.
//   probe.js serve <port>[,<port>...]               tcp + udp echo on each; prints "listening"
//   probe.js prober                                 reads {"id","proto","ip","port","timeout"} lines on
//                                                   stdin, answers {"id","ok"} lines, many at once
//   probe.js connect tcp|udp <ip> <port> <timeout>  prints "ok" if the echo came back
//   probe.js stream <ip> <port>                     long-lived tcp: one line a 100 ms, prints each echo
import { connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { listenTcpUdp } from './listen.js';

/** One connection attempt: ok when the echo came back within the timeout. */
function attempt(proto: 'tcp' | 'udp', ip: string, port: number, timeout: number, done: (ok: boolean) => void): void {
	let finished = false;
	const finish = (ok: boolean): void => {
		if (finished) return;
		finished = true;
		clearTimeout(timer);
		if (proto === 'tcp') tcp?.destroy();
		else udp?.close();
		done(ok);
	};
	const timer = setTimeout(() => finish(false), timeout);
	let tcp: ReturnType<typeof connect> | undefined;
	let udp: ReturnType<typeof createSocket> | undefined;
	if (proto === 'tcp') {
		tcp = connect({ host: ip, port });
		tcp.on('connect', () => tcp!.write('ping'));
		tcp.on('data', () => finish(true));
		tcp.on('error', () => finish(false));
	} else {
		udp = createSocket('udp4');
		udp.on('message', () => finish(true));
		udp.on('error', () => finish(false));
		udp.send('ping', port, ip);
	}
}

const [mode, ...args] = process.argv.slice(2);

if (mode === 'serve') {
	listenTcpUdp(
		String(args[0]).split(',').map(Number),
		(s) => s.pipe(s),
		(udp, msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address),
	);
} else if (mode === 'prober') {
	const rl = createInterface({ input: process.stdin });
	rl.on('line', (line) => {
		const req = JSON.parse(line) as { id: number; proto: 'tcp' | 'udp'; ip: string; port: number; timeout: number };
		attempt(req.proto, req.ip, req.port, req.timeout, (ok) => process.stdout.write(`${JSON.stringify({ id: req.id, ok })}\n`));
	});
	rl.on('close', () => process.exit(0));
} else if (mode === 'connect') {
	const [proto, ip, portS, timeoutS] = args;
	attempt(proto as 'tcp' | 'udp', ip!, Number(portS), Number(timeoutS ?? 700), (ok) => {
		process.stdout.write(ok ? 'ok\n' : 'fail\n');
		process.exit(ok ? 0 : 1);
	});
} else if (mode === 'stream') {
	const [ip, portS] = args;
	const s = connect({ host: ip!, port: Number(portS) });
	let n = 0;
	s.on('connect', () => {
		setInterval(() => s.write(`${n++}\n`), 100);
	});
	s.on('data', (d) => process.stdout.write(d));
	s.on('error', (e) => {
		process.stderr.write(`stream error: ${e.message}\n`);
		process.exit(2);
	});
	s.on('close', () => process.exit(3));
} else {
	process.stderr.write('usage: probe.js serve|connect|stream ...\n');
	process.exit(64);
}
