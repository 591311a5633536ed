// The relay benchmark's node agents, in their own process (so that making flows does
// not share the relay's or the measuring process's event loop): K observer APIs (the
// agent's own, over a FlowRing) on loopback, fed with the segregation scenario's flows
// at the rate the parent sets over IPC ({ rate: flows/s in total }, 0 stops, -1: as
// fast as this process can). Prints {"urls": [...]} once listening.
import { startNode, scenarioFlow, SCENARIO_TRAFFIC, type FakeNode } from '../test/helpers/relay-lab.js';

const K = Number(process.argv[2] ?? 2);
const nodes: FakeNode[] = await Promise.all(Array.from({ length: K }, (_, i) => startNode(`n${i + 1}`, 8192)));
let rate = 0;
let sent = 0;
let since = Date.now();
let base = 0;

function add(n: number): void {
	const now = Date.now();
	for (let i = 0; i < n; i++, sent++) {
		const s = SCENARIO_TRAFFIC[sent % SCENARIO_TRAFFIC.length]!;
		const node = nodes[sent % K]!;
		node.ring.add(scenarioFlow({ ...s, node: node.name, time: now, sport: 1024 + (sent % 60000) }));
	}
}

function tick(): void {
	if (rate > 0) {
		const due = base + Math.floor(((Date.now() - since) / 1000) * rate);
		add(Math.min(due - sent, 5000));
		setTimeout(tick, 5);
	} else if (rate < 0) {
		add(500);
		setImmediate(tick);
	} else setTimeout(tick, 50);
}

process.on('message', (m: { rate?: number; report?: boolean }) => {
	if (m.rate !== undefined) {
		rate = m.rate;
		since = Date.now();
		base = sent;
	}
	if (m.report) process.send!({ sent });
});
process.send!({ urls: nodes.map((n) => ({ name: n.name, url: n.url })) });
tick();
