// Relay benchmark: prints figures, never asserts.
//   node dist/bench/relay.bench.js [--nodes 2] [--seconds 10]     (scripts/bench.sh relay)
//
// weir-controller (the real executable) follows K node observers (the agent's own
// observer API, in another process, fed with the segregation scenario's flows), with
// the web UI open in headless Chromium (Debian's) and one CLI-like follower counting
// what the relay serves. Phases:
//   idle       no traffic: the page's frame times (the baseline)
//   1000/s     1 000 flows/s offered: frame times in the page, flows served, relay RSS
//   max        the nodes make flows as fast as their process can: flows/s the relay
//              merges (received) and serves to the follower, relay RSS
// Baseline for throughput in the same run: the same follower reading one node's
// observer API directly at the max rate (what the node side can make and send).
// Then the heap each of the relay's bounded structures holds when full at the defaults
// (bench/relay-memory.ts, in its own process).
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openBrowser } from '../test/helpers/browser.js';
import { ndjsonLines } from '../src/shared/ndjson.js';
import { repoRoot } from '../src/shared/package.js';
import { pct } from './stats.js';

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '2' }, seconds: { type: 'string', default: '10' } } });
const K = Number(values.nodes);
const SECONDS = Number(values.seconds);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function rssMb(pid: number): { rss: number; hwm: number } {
	const s = readFileSync(`/proc/${pid}/status`, 'utf8');
	const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
	return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

/** NODE_OPTIONS of weir-controller in deploy/base/controller.yaml. */
function deployedNodeOptions(): string {
	const m = /name: NODE_OPTIONS\s+value: (\S+)/.exec(readFileSync(join(repoRoot, 'deploy', 'base', 'controller.yaml'), 'utf8'));
	return m?.[1] ?? '';
}

/** Counts flow lines of a follow stream. */
class Counter {
	count = 0;
	lost = 0;
	private readonly ac = new AbortController();
	constructor(url: string) {
		void (async () => {
			try {
				const res = await fetch(url, { signal: this.ac.signal });
				for await (const l of ndjsonLines(res.body as unknown as AsyncIterable<Uint8Array>)) {
					if (l['event'] === undefined) this.count++;
					else if (l['event'] === 'lost') this.lost += Number(l['lost']);
				}
			} catch {
				// aborted
			}
		})();
	}
	stop(): void {
		this.ac.abort();
	}
}

async function main(): Promise<void> {
	const nodes = fork(join(repoRoot, 'dist', 'bench', 'relay-nodes.js'), [String(K)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
	const urls = await new Promise<Array<{ name: string; url: string }>>((r) =>
		nodes.once('message', (m: { urls: Array<{ name: string; url: string }> }) => r(m.urls)),
	);
	const setRate = (rate: number): void => void nodes.send({ rate });
	const sent = (): Promise<number> =>
		new Promise((r) => {
			nodes.once('message', (m: { sent: number }) => r(m.sent));
			nodes.send({ report: true });
		});

	// Baseline: one node's observer API straight, at the max rate.
	const direct = new Counter(`${urls[0]!.url}/v1/flows?follow=true&limit=0`);
	await sleep(300);
	setRate(-1);
	await sleep(1000);
	let c0 = direct.count;
	let s0 = await sent();
	await sleep(SECONDS * 1000);
	const directRate = (direct.count - c0) / SECONDS;
	const madeRate = ((await sent()) - s0) / SECONDS;
	direct.stop();
	setRate(0);
	await sleep(500);

	const relay: ChildProcess = spawn(
		process.execPath,
		[
			join(repoRoot, 'dist', 'src', 'controller', 'main.js'),
			'--host',
			'127.0.0.1',
			'--port',
			'0',
			'--log-level',
			'warn',
			...urls.flatMap((u) => ['--node', `${u.name}=${u.url}`]),
		],
		// As deployed: deploy/base/controller.yaml's NODE_OPTIONS (the bounded heap).
		{ stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: deployedNodeOptions() } },
	);
	const relayUrl = await new Promise<string>((resolve) => {
		let out = '';
		relay.stdout!.on('data', (d: Buffer) => {
			out += d.toString();
			const m = /listening on (http:\/\/\S+)/.exec(out);
			if (m) resolve(m[1]!);
		});
	});
	const stats = async (): Promise<Record<string, number>> => (await (await fetch(`${relayUrl}/v1/relay`)).json()) as Record<string, number>;
	const browser = await openBrowser({ width: 1400, height: 900 });
	const page = browser.page;
	await page.goto(`${relayUrl}/`);
	await sleep(2000);
	const frames = async (ms: number): Promise<{ frames: number[]; longTasks: number[] }> =>
		page.evaluate(
			(ms) =>
				new Promise<{ frames: number[]; longTasks: number[] }>((resolve) => {
					const out: number[] = [];
					const longTasks: number[] = [];
					const po = new PerformanceObserver((l) => l.getEntries().forEach((e) => longTasks.push(e.duration)));
					try {
						po.observe({ type: 'longtask', buffered: false });
					} catch {
						// no long task timing
					}
					let last = performance.now();
					const end = last + ms;
					const step = (now: number): void => {
						out.push(now - last);
						last = now;
						if (now < end) requestAnimationFrame(step);
						else {
							po.disconnect();
							resolve({ frames: out, longTasks });
						}
					};
					requestAnimationFrame(step);
				}),
			ms,
		);
	const fmt = (f: { frames: number[]; longTasks: number[] }): string =>
		`${f.frames.length} frames, frame time p50 ${pct(f.frames, 50).toFixed(1)} ms, p95 ${pct(f.frames, 95).toFixed(1)} ms, p99 ${pct(f.frames, 99).toFixed(1)} ms, max ${Math.max(...f.frames).toFixed(1)} ms; long tasks (>50 ms) ${f.longTasks.length}${f.longTasks.length ? `, longest ${Math.max(...f.longTasks).toFixed(0)} ms` : ''}`;

	const idle = await frames(5000);
	const follower = new Counter(`${relayUrl}/v1/flows?follow=true&last=0`);
	await sleep(300);

	setRate(1000);
	await sleep(2000);
	c0 = follower.count;
	const r0 = (await stats())['received']!;
	const at1000 = await frames(SECONDS * 1000);
	const served1000 = (follower.count - c0) / SECONDS;
	const received1000 = ((await stats())['received']! - r0) / SECONDS;
	const mem1000 = rssMb(relay.pid!);
	const rows = await page.locator('[data-testid=flow-row]').count();
	const rowCount = await page.locator('[data-testid=row-count]').innerText();

	setRate(-1);
	await sleep(2000);
	c0 = follower.count;
	s0 = await sent();
	const r1 = (await stats())['received']!;
	await sleep(SECONDS * 1000);
	const servedMax = (follower.count - c0) / SECONDS;
	const receivedMax = ((await stats())['received']! - r1) / SECONDS;
	const offeredMax = ((await sent()) - s0) / SECONDS;
	const memMax = rssMb(relay.pid!);
	const st = await stats();
	setRate(0);

	console.log(
		`relay benchmark: ${K} node observers (another process), weir-controller (NODE_OPTIONS=${deployedNodeOptions()}, as deployed), the web UI open in headless Chromium, one follower; ${SECONDS} s per phase`,
	);
	console.log('');
	console.log(
		`baseline  one node's observer API read directly at the max rate: ${directRate.toFixed(0)} flows/s (the nodes made ${madeRate.toFixed(0)} flows/s)`,
	);
	console.log(`idle      page: ${fmt(idle)}`);
	console.log(`1000/s    page: ${fmt(at1000)}`);
	console.log(
		`          relay received ${received1000.toFixed(0)} flows/s, served the follower ${served1000.toFixed(0)} flows/s; the page keeps ${rowCount} and renders ${rows} rows`,
	);
	console.log(`          relay RSS ${mem1000.rss.toFixed(0)} MB (peak ${mem1000.hwm.toFixed(0)} MB)`);
	console.log(
		`max       nodes made ${offeredMax.toFixed(0)} flows/s; relay received (merged) ${receivedMax.toFixed(0)} flows/s and served the follower ${servedMax.toFixed(0)} flows/s (ratio to the direct baseline ${(servedMax / directRate).toFixed(2)})`,
	);
	console.log(
		`          relay RSS ${memMax.rss.toFixed(0)} MB (peak ${memMax.hwm.toFixed(0)} MB); history ${st['history']}/${st['historyCapacity']} flows, map ${st['mapEdges']} edges, follower lines lost ${st['followersLost']}, follower-side lost notices ${follower.lost}`,
	);
	follower.stop();
	await browser.close();
	relay.kill('SIGTERM');
	nodes.kill('SIGTERM');
	console.log('');
	process.stdout.write(execFileSync(process.execPath, ['--expose-gc', join(repoRoot, 'dist', 'bench', 'relay-memory.js')], { encoding: 'utf8' }));
}

main().then(
	() => process.exit(0),
	(err: Error) => {
		console.error(`relay bench: ${err.stack ?? err.message}`);
		process.exit(1);
	},
);
