// A process whose ring-buffer poller really fails: it opens a ring (through the
// binding, or through Datapath.subscribe), lets a few records through, then closes
// the poller's own epoll fd under it, so the native thread's next epoll_wait fails
// with EBADF. No hook in the addon: the fd is found in /proc/self/fd as the newest
// eventpoll the ring created (libbpf's ring_buffer__new makes one, then the addon's
// poller its own; the poller waits on the latter).
//
// It runs as a child process because it closes an fd it does not own: the ring's
// close() later closes that number again, harmless here (nothing opens fds between
// the two closes in this script) but not something to do inside a test runner.
// Prints one JSON line: what onError received, and the records seen before it.
//   ring-fault-child.js binding <addon_fixture.bpf.o>
//   ring-fault-child.js datapath <pinRoot>
import { closeSync, readdirSync, readlinkSync } from 'node:fs';
import { Datapath, DatapathError } from '../../src/kernel/datapath.js';
import { NativeError, native } from '../../src/kernel/addon.js';
import { frame } from './packets.js';

function eventpolls(): Set<number> {
	const out = new Set<number>();
	for (const fd of readdirSync('/proc/self/fd')) {
		try {
			if (readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventpoll]') out.add(Number(fd));
		} catch {
			// the fd of readdir itself, gone by now
		}
	}
	return out;
}

/**
 * Opens a ring with open(), has records produced, and once some arrived closes the
 * poller's epoll fd. Return: how many eventpoll fds open() created.
 */
function breakPoller(open: () => void, records: () => number, produce: () => void): number {
	const before = eventpolls();
	open();
	const created = [...eventpolls()].filter((fd) => !before.has(fd));
	produce();
	const timer = setInterval(() => {
		if (records() === 0) return;
		clearInterval(timer);
		closeSync(Math.max(...created));
	}, 20);
	setTimeout(() => {
		process.stdout.write(`${JSON.stringify({ timeout: true, records: records(), newFds: created.length })}\n`);
		process.exit(3);
	}, 8000).unref();
	return created.length;
}

const [mode, arg] = process.argv.slice(2);
let records = 0;
let newFds = 0;
const report = (e: object): void => void process.stdout.write(`${JSON.stringify({ ...e, records, newFds })}\n`);
if (mode === 'binding') {
	const b = native();
	const o = b.openObject(arg!);
	await o.load();
	newFds = breakPoller(
		() => {
			const ring = b.openRingBuffer(
				o.map('weir_test_events'),
				(recs) => (records += recs.length),
				(err: NativeError) => {
					ring.close();
					o.close();
					report({ isError: err instanceof Error, code: err.code, errno: err.errno, op: err.op, message: err.message });
				},
			);
		},
		() => records,
		() => o.program('weir_test_tc').testRun({ data: Buffer.alloc(64), repeat: 3 }),
	);
} else if (mode === 'datapath') {
	const dp = await Datapath.open({ pinRoot: arg! });
	newFds = breakPoller(
		() => {
			dp.subscribe(
				() => records++,
				(err: DatapathError) => {
					const cause = err.cause as NativeError;
					// The stream closed itself; destroy() (close, unpin) finds no ring left.
					dp.destroy();
					report({
						isDatapathError: err instanceof DatapathError,
						code: err.code,
						message: err.message,
						cause: { code: cause.code, op: cause.op, errno: cause.errno },
					});
				},
			);
		},
		() => records,
		// A packet from an address with no endpoint: one drop event per run.
		() => dp.program('weir_from_pod').testRun({ data: frame({ src: '10.250.0.1', dst: '10.250.0.2', protocol: 'udp', sport: 1, dport: 2 }), repeat: 3 }),
	);
} else {
	process.stderr.write('usage: ring-fault-child.js binding <object> | datapath <pinRoot>\n');
	process.exit(2);
}
