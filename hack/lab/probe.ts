// Tiny traffic tool run inside pod namespaces by the tests.
//   probe.js serve <port>                           tcp + udp echo; prints "listening"
//   probe.js connect tcp|udp <ip> <port> <timeout>  prints "ok" if the echo came back
//   probe.js stream <ip> <port>                     long-lived tcp: one line a 100 ms, prints each echo
import { createServer, connect } from 'node:net';
import { createSocket } from 'node:dgram';

const [mode, ...args] = process.argv.slice(2);

if (mode === 'serve') {
	const port = Number(args[0]);
	const tcp = createServer((s) => s.pipe(s));
	const udp = createSocket('udp4');
	udp.on('message', (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address));
	let ready = 0;
	const up = (): void => {
		if (++ready === 2) process.stdout.write('listening\n');
	};
	tcp.listen(port, '0.0.0.0', up);
	udp.bind(port, '0.0.0.0', up);
} else if (mode === 'connect') {
	const [proto, ip, portS, timeoutS] = args;
	const port = Number(portS);
	const timeout = Number(timeoutS ?? 700);
	const done = (ok: boolean): never => {
		process.stdout.write(ok ? 'ok\n' : 'fail\n');
		process.exit(ok ? 0 : 1);
	};
	setTimeout(() => done(false), timeout);
	if (proto === 'tcp') {
		const s = connect({ host: ip!, port });
		s.on('connect', () => s.write('ping'));
		s.on('data', () => done(true));
		s.on('error', () => done(false));
	} else {
		const u = createSocket('udp4');
		u.on('message', () => done(true));
		u.send('ping', port, ip!);
	}
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
