// The lab servers' common part: TCP and UDP on 0.0.0.0 at each port, "listening" on
// stdout once every socket is bound (what Topology.serve and LbLab.ident wait for).
import { createServer, type Socket } from 'node:net';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';

export function listenTcpUdp(
	ports: readonly number[],
	onConnection: (s: Socket) => void,
	onDatagram: (udp: UdpSocket, msg: Buffer, from: RemoteInfo) => void,
): void {
	let ready = 0;
	const up = (): void => {
		if (++ready === ports.length * 2) process.stdout.write('listening\n');
	};
	for (const port of ports) {
		const tcp = createServer((s) => {
			s.on('error', () => undefined);
			onConnection(s);
		});
		const udp = createSocket('udp4');
		udp.on('message', (msg, rinfo) => onDatagram(udp, msg, rinfo));
		tcp.listen({ port, host: '0.0.0.0', backlog: 1024 }, up);
		udp.bind(port, '0.0.0.0', up);
	}
}
