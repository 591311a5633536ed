// Traffic tool for the socket load balancer's tests and benchmark, run inside lab
// namespaces (and, for clients, inside the cgroup the programs are attached to).
//   lb-probe.js ident <name> <port>[,<port>...]   TCP and UDP on each port, answering
//        "<name> <client address>:<client port>\n" (TCP: once, then it closes; UDP: to
//        every datagram); prints "listening" when every socket is bound
//   lb-probe.js client                            reads one JSON request a line on stdin
//        and answers each with one JSON line carrying the request's id (LbRequest)
import { connect, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { listenTcpUdp } from './listen.js';

export type LbRequest =
	/** one TCP connection: what getpeername() says and what the server saw */
	| { id: number; op: 'tcp'; ip: string; port: number; timeout?: number }
	/** `count` datagrams on one socket (named `sock`: kept for later requests), each awaiting its answer */
	| { id: number; op: 'udp'; ip: string; port: number; count?: number; timeout?: number; sock?: string }
	/** serial TCP connections for `ms`: which servers answered, which errors came back */
	| { id: number; op: 'tcploop'; ip: string; port: number; ms: number }
	/** `n` serial TCP connects: each one's connect() latency (call to the connect event), in microseconds */
	| { id: number; op: 'tcpbench'; ip: string; port: number; n: number };

export interface TcpAnswer {
	id: number;
	ok: boolean;
	/** errno name of a failed connect */
	code?: string;
	ms: number;
	server?: string;
	/** the client's address as the server saw it */
	seen?: string;
	/** getpeername() of the client socket */
	peer?: string;
	/** getsockname() of the client socket */
	local?: string;
}

export interface UdpReply {
	/** the source of the answer as recvfrom() reported it */
	from: string;
	server: string;
	seen: string;
}

export interface UdpAnswer {
	id: number;
	ok: boolean;
	code?: string;
	replies: UdpReply[];
}

export interface LoopAnswer {
	id: number;
	counts: Record<string, number>;
	failures: Record<string, number>;
}

export interface BenchAnswer {
	id: number;
	us: number[];
	failures: number;
}

function tcpOnce(ip: string, port: number, timeout: number): Promise<Omit<TcpAnswer, 'id'>> {
	return new Promise((res) => {
		const t0 = performance.now();
		let s: Socket | undefined = undefined;
		let peer: string | undefined;
		let local: string | undefined;
		let buf = '';
		let done = false;
		const finish = (a: Omit<TcpAnswer, 'id' | 'ms'>): void => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			s?.destroy();
			res({ ...a, ms: performance.now() - t0, ...(peer ? { peer } : {}), ...(local ? { local } : {}) });
		};
		const timer = setTimeout(() => finish({ ok: false, code: 'ETIMEDOUT' }), timeout);
		s = connect({ host: ip, port });
		s.on('connect', () => {
			peer = `${s!.remoteAddress}:${s!.remotePort}`;
			local = `${s!.localAddress}:${s!.localPort}`;
		});
		s.on('data', (d: Buffer) => {
			buf += d.toString();
			const nl = buf.indexOf('\n');
			if (nl < 0) return;
			const [server, seen] = buf.slice(0, nl).split(' ');
			finish({ ok: true, server: server!, seen: seen! });
		});
		s.on('error', (e: NodeJS.ErrnoException) => finish({ ok: false, code: e.code ?? e.message }));
		s.on('close', () => finish({ ok: false, code: 'ECLOSED' }));
	});
}

const sockets = new Map<string, UdpSocket>();

async function udp(req: Extract<LbRequest, { op: 'udp' }>): Promise<Omit<UdpAnswer, 'id'>> {
	let sock = req.sock ? sockets.get(req.sock) : undefined;
	if (!sock) {
		sock = createSocket('udp4');
		if (req.sock) sockets.set(req.sock, sock);
	}
	const replies: UdpReply[] = [];
	const s = sock;
	try {
		for (let i = 0; i < (req.count ?? 1); i++) {
			const r = await new Promise<UdpReply | { code: string }>((res) => {
				const timer = setTimeout(() => {
					s.off('message', onMsg);
					res({ code: 'ETIMEDOUT' });
				}, req.timeout ?? 1000);
				const onMsg = (msg: Buffer, rinfo: { address: string; port: number }): void => {
					clearTimeout(timer);
					s.off('message', onMsg);
					const [server, seen] = msg.toString().trim().split(' ');
					res({ from: `${rinfo.address}:${rinfo.port}`, server: server!, seen: seen! });
				};
				s.on('message', onMsg);
				s.send(`q${i}`, req.port, req.ip, (err) => {
					if (!err) return;
					clearTimeout(timer);
					s.off('message', onMsg);
					res({ code: (err as NodeJS.ErrnoException).code ?? err.message });
				});
			});
			if ('code' in r) return { ok: false, code: r.code, replies };
			replies.push(r);
		}
		return { ok: true, replies };
	} finally {
		if (!req.sock) s.close();
	}
}

async function loop(req: Extract<LbRequest, { op: 'tcploop' }>): Promise<Omit<LoopAnswer, 'id'>> {
	const counts: Record<string, number> = {};
	const failures: Record<string, number> = {};
	const end = performance.now() + req.ms;
	while (performance.now() < end) {
		const a = await tcpOnce(req.ip, req.port, 1000);
		if (a.ok) counts[a.server!] = (counts[a.server!] ?? 0) + 1;
		else failures[a.code!] = (failures[a.code!] ?? 0) + 1;
	}
	return { counts, failures };
}

function connectLatency(ip: string, port: number): Promise<number | undefined> {
	return new Promise((res) => {
		const t0 = process.hrtime.bigint();
		const s = connect({ host: ip, port });
		s.once('connect', () => {
			res(Number(process.hrtime.bigint() - t0) / 1000);
			s.destroy();
		});
		s.once('error', () => res(undefined));
	});
}

async function bench(req: Extract<LbRequest, { op: 'tcpbench' }>): Promise<Omit<BenchAnswer, 'id'>> {
	const us: number[] = [];
	let failures = 0;
	for (let i = 0; i < req.n; i++) {
		const t = await connectLatency(req.ip, req.port);
		if (t === undefined) failures++;
		else us.push(t);
	}
	return { us, failures };
}

async function answer(req: LbRequest): Promise<object> {
	switch (req.op) {
		case 'tcp':
			return tcpOnce(req.ip, req.port, req.timeout ?? 1000);
		case 'udp':
			return udp(req);
		case 'tcploop':
			return loop(req);
		case 'tcpbench':
			return bench(req);
	}
}

const [mode, ...args] = process.argv.slice(2);

if (mode === 'ident') {
	const name = args[0]!;
	listenTcpUdp(
		String(args[1]).split(',').map(Number),
		(s) => s.end(`${name} ${s.remoteAddress}:${s.remotePort}\n`),
		(udp, _msg, rinfo) => udp.send(`${name} ${rinfo.address}:${rinfo.port}\n`, rinfo.port, rinfo.address),
	);
} else if (mode === 'client') {
	const rl = createInterface({ input: process.stdin });
	// One request at a time, in order: answers never interleave.
	let chain = Promise.resolve();
	rl.on('line', (line) => {
		const req = JSON.parse(line) as LbRequest;
		chain = chain.then(async () => {
			const a = await answer(req);
			process.stdout.write(`${JSON.stringify({ ...a, id: req.id })}\n`);
		});
	});
	rl.on('close', () => void chain.then(() => process.exit(0)));
} else {
	process.stderr.write('usage: lb-probe.js ident <name> <ports> | client\n');
	process.exit(64);
}
