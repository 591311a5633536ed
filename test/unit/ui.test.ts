// The web UI in real headless Chromium (Debian's, through playwright-core) against the
// relay fed by real node observers on loopback, with the segregation scenario's
// flows: the map's edges and colours, the policy in the table, filters, the namespace
// picker, details, pause/resume, live updates, a node going away. Screenshots in
// test-results/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, type Browser } from '../helpers/browser.js';
import { scenarioFlow, startRelayLab, startTraffic, until, type RelayLab } from '../helpers/relay-lab.js';

const DROP = 'rgb(214, 51, 108)'; // the UI's drop colour, #d6336c
const FWD = 'rgb(43, 138, 62)'; // forwarded, #2b8a3e

let lab: RelayLab;
let b: Browser;
let traffic: ReturnType<typeof startTraffic>;

before(async () => {
	lab = await startRelayLab(['n1', 'n2']);
	traffic = startTraffic(lab, 20);
	b = await openBrowser();
	const outside: string[] = [];
	b.page.on('request', (r) => {
		if (!r.url().startsWith(lab.url)) outside.push(r.url());
	});
	b.page.on('pageerror', (e) => assert.fail(`page error: ${e.message}`));
	await b.page.goto(`${lab.url}/`);
	assert.deepEqual(outside, [], 'the page loads nothing from anywhere but the relay');
});

after(async () => {
	traffic.stop();
	await b?.close();
	await lab.stop();
});

const edge = (src: string, dst: string) => b.page.locator(`[data-testid=map-edge][data-source="${src}"][data-destination="${dst}"]`);
const rows = () => b.page.locator('[data-testid=flow-row]');

async function rowTexts(): Promise<string[]> {
	return rows().evaluateAll((els) => els.map((e) => (e as HTMLElement).innerText.replace(/\s+/g, ' ')));
}

test('the map: apache -> redis in the drop colour, app -> redis forwarded, namespaces as groups', async () => {
	await edge('b-apache/apache', 'd-redis/redis').waitFor({ timeout: 10_000 });
	const drop = edge('b-apache/apache', 'd-redis/redis');
	const fwd = edge('c-app/app', 'd-redis/redis');
	assert.equal(await drop.getAttribute('data-verdict'), 'DROPPED');
	assert.equal(await fwd.getAttribute('data-verdict'), 'FORWARDED');
	assert.equal(await drop.locator('path[marker-end]').evaluate((p) => getComputedStyle(p).stroke), DROP);
	assert.equal(await fwd.locator('path[marker-end]').evaluate((p) => getComputedStyle(p).stroke), FWD);
	assert.match((await drop.locator('text').textContent()) ?? '', /^6379\/TCP · \d+ dropped$/);
	assert.deepEqual((await b.page.locator('[data-testid=map-namespace]').evaluateAll((els) => els.map((e) => e.getAttribute('data-namespace')))).sort(), [
		'a-ingress',
		'b-apache',
		'c-app',
		'd-redis',
	]);
	await b.screenshot('ui-map');
});

test('the table names the policy that denied or allowed each flow; the details show it in full', async () => {
	await until('rows', 10_000, async () => ((await rows().count()) > 4 ? true : undefined));
	const texts = await rowTexts();
	const dropRow = texts.find((t) => t.includes('b-apache/apache') && t.includes('d-redis/redis'));
	assert.ok(dropRow, texts.join('\n'));
	assert.match(dropRow, /6379\/TCP SYN DROPPED POLICY_DENIED denied: d-redis\/redis-allow-c-app/);
	const okRow = texts.find((t) => t.includes('c-app/app') && t.includes('d-redis/redis'))!;
	assert.match(okRow, /FORWARDED allowed: d-redis\/redis-allow-c-app ingress\[0\]/);
	// Paused, so that the rows stand still under the click.
	await b.page.locator('[data-testid=pause]').click();
	await rows().filter({ hasText: 'POLICY_DENIED' }).first().click();
	const d = b.page.locator('[data-testid=flow-details]');
	await d.waitFor();
	assert.equal(await d.locator('[data-testid=detail-node]').innerText(), 'n2');
	assert.equal(await d.locator('[data-testid=detail-tcp-flags]').innerText(), 'SYN');
	assert.equal(await d.locator('[data-testid=detail-policy]').innerText(), 'denied: isolated by NetworkPolicy d-redis/redis-allow-c-app');
	assert.deepEqual(await d.locator('[data-testid=detail-identity]').allInnerTexts(), ['40102', '40104']);
	assert.match(await d.innerText(), /app=apache[\s\S]*app=redis/);
	await b.screenshot('ui-details');
	await d.getByRole('button', { name: 'close details' }).click();
	await b.page.locator('[data-testid=pause]').click();
});

test('filters narrow the table: verdict, pod, label, port, protocol, namespaces', async () => {
	const p = b.page;
	const settle = async (want: (ts: string[]) => boolean, what: string): Promise<string[]> =>
		until(what, 10_000, async () => {
			const ts = await rowTexts();
			return ts.length > 0 && want(ts) ? ts : undefined;
		});
	await p.locator('[data-testid=filter-verdict]').selectOption('DROPPED');
	await settle((ts) => ts.every((t) => / DROPPED /.test(t)), 'only drops');
	await p.locator('[data-testid=filter-verdict]').selectOption('');
	await p.locator('[data-testid=filter-pod]').fill('c-app/app');
	await p.locator('[data-testid=filter-pod]').press('Enter');
	await settle((ts) => ts.every((t) => t.includes('c-app/app')), 'only c-app/app');
	await p.locator('[data-testid=filter-pod]').fill('');
	await p.locator('[data-testid=filter-label]').fill('app=ingress');
	await p.locator('[data-testid=filter-label]').press('Enter');
	await settle((ts) => ts.every((t) => t.includes('a-ingress/ingress')), 'only app=ingress');
	await p.locator('[data-testid=filter-label]').fill('');
	await p.locator('[data-testid=filter-port]').fill('8080');
	await p.locator('[data-testid=filter-port]').press('Enter');
	await settle((ts) => ts.every((t) => t.includes('8080/TCP')), 'only port 8080');
	await p.locator('[data-testid=filter-port]').fill('');
	await p.locator('[data-testid=filter-protocol]').selectOption('UDP');
	await until('no UDP flows', 10_000, async () => ((await rows().count()) === 0 ? true : undefined));
	await p.locator('[data-testid=filter-protocol]').selectOption('');
	await p.locator('[data-testid=filter-port]').press('Enter');
	// Namespaces: one of them narrows the map and the table.
	await p.locator('[data-testid=namespace-button]').click();
	await p.locator('[data-testid=namespace-a-ingress]').check();
	await p.locator('[data-testid=namespace-button]').click();
	await settle((ts) => ts.every((t) => t.includes('a-ingress/')), 'only a-ingress');
	await until('the map of a-ingress alone', 10_000, async () => {
		const es = await p
			.locator('[data-testid=map-edge]')
			.evaluateAll((els) => els.map((e) => `${e.getAttribute('data-source')}>${e.getAttribute('data-destination')}`));
		return es.length === 1 && es[0] === 'a-ingress/ingress>b-apache/apache' ? true : undefined;
	});
	await b.screenshot('ui-namespace-a-ingress');
	// Several: a-ingress and d-redis.
	await p.locator('[data-testid=namespace-button]').click();
	await p.locator('[data-testid=namespace-d-redis]').check();
	await p.locator('[data-testid=namespace-button]').click();
	await until('both namespaces in the map', 10_000, async () => ((await p.locator('[data-testid=map-edge]').count()) === 3 ? true : undefined));
	await p.locator('[data-testid=namespace-button]').click();
	await p.locator('[data-testid=namespace-all]').check();
	await p.locator('[data-testid=namespace-button]').click();
	await until('all edges again', 10_000, async () => ((await p.locator('[data-testid=map-edge]').count()) === 4 ? true : undefined));
});

test('host traffic (kubelet probes) is hidden by default, shown on demand', async () => {
	const p = b.page;
	const probe = scenarioFlow({ from: 'ingress', to: 'apache', port: 8080, node: 'n1', time: Date.now() });
	probe.source = { ip: '198.18.0.11', identity: 1, labels: [], reserved: 'host' };
	lab.nodes[0]!.ring.add(probe);
	const hostEdges = () => p.locator('[data-testid=map-edge][data-source="reserved:host"]');
	await until('the probe in the relay', 10_000, async () => {
		const r = (await (await fetch(`${lab.url}/v1/flows?from-reserved=host`)).json()) as { flows: unknown[] };
		return r.flows.length ? true : undefined;
	});
	await p.waitForTimeout(2500); // a map refresh
	assert.equal(await hostEdges().count(), 0, 'hidden by default');
	assert.ok(!(await rowTexts()).some((t) => t.includes('host (198.18.0.11)')));
	await p.locator('[data-testid=filter-hide-host]').uncheck();
	await until('the host edge shown', 10_000, async () => ((await hostEdges().count()) === 1 ? true : undefined));
	// (only the rows in view are in the page: a new probe comes in at the top)
	lab.nodes[0]!.ring.add({ ...probe, time: new Date().toISOString() });
	await until('the probe row shown', 10_000, async () => ((await rowTexts()).some((t) => t.includes('host (198.18.0.11)')) ? true : undefined));
	await p.locator('[data-testid=filter-hide-host]').check();
	await until('hidden again', 10_000, async () => ((await hostEdges().count()) === 0 ? true : undefined));
});

test('clicking an edge narrows the table to it', async () => {
	await edge('c-app/app', 'd-redis/redis').click();
	await until('only app -> redis', 10_000, async () => {
		const ts = await rowTexts();
		return ts.length > 0 && ts.every((t) => t.includes('c-app/app') && t.includes('d-redis/redis') && t.includes('6379/TCP')) ? true : undefined;
	});
	await b.page.locator('[data-testid=filter-edge]').click();
	await until('all pairs again', 10_000, async () => ((await rowTexts()).some((t) => t.includes('a-ingress/')) ? true : undefined));
});

test('live: new traffic appears without a reload; pause holds it, resume shows it', async () => {
	const p = b.page;
	await p.locator('[data-testid=filter-port]').fill('9000');
	await p.locator('[data-testid=filter-port]').press('Enter');
	await until('the table empty for port 9000', 10_000, async () => ((await rows().count()) === 0 ? true : undefined));
	const n1 = lab.nodes[0]!;
	n1.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 9000, node: 'n1', time: Date.now() }));
	await until('the new flow in the table', 10_000, async () => ((await rows().count()) === 1 ? true : undefined));
	await until('its edge in the map', 10_000, async () => ((await p.locator('[data-testid=map-edge][data-port="9000"]').count()) === 1 ? true : undefined));
	await p.locator('[data-testid=pause]').click();
	n1.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 9000, node: 'n1', time: Date.now() }));
	n1.ring.add(scenarioFlow({ from: 'ingress', to: 'apache', port: 9000, node: 'n1', time: Date.now() + 1 }));
	await until('held while paused', 10_000, async () => ((await p.locator('[data-testid=pause]').innerText()) === 'Resume (2 new)' ? true : undefined));
	assert.equal(await rows().count(), 1, 'the table stands still while paused');
	await p.locator('[data-testid=pause]').click();
	await until('shown after resume', 10_000, async () => ((await rows().count()) === 3 ? true : undefined));
	await p.locator('[data-testid=filter-clear]').click();
});

test('a node whose agent stops shows as unavailable; the other keeps streaming', async () => {
	const p = b.page;
	const [n1] = lab.nodes as [RelayLab['nodes'][0]];
	await n1.kill();
	await p.locator('[data-testid=node-status][data-node=n1][data-state=unavailable]').waitFor({ timeout: 10_000 });
	assert.equal(await p.locator('[data-testid=node-status][data-node=n2]').getAttribute('data-state'), 'connected');
	// n2 (redis's node) still streams: its newest flows keep arriving.
	const before = await p.locator('[data-testid=flow-row]').first().innerText();
	await until('new flows from n2', 10_000, async () => {
		const now = await p.locator('[data-testid=flow-row]').first().innerText();
		return now !== before && now.includes('d-redis/') ? true : undefined;
	});
	await b.screenshot('ui-node-unavailable');
	await n1.revive();
	await p.locator('[data-testid=node-status][data-node=n1][data-state=connected]').waitFor({ timeout: 15_000 });
});

test('a relay that refuses the query: the page says why', async () => {
	const r = await fetch(`${lab.url}/v1/flows?follow=true&port=70000`);
	assert.equal(r.status, 400);
	await b.page.locator('[data-testid=filter-port]').fill('70000');
	await b.page.locator('[data-testid=filter-port]').press('Enter');
	await b.page.locator('[data-testid=stream-error]').waitFor({ timeout: 10_000 });
	assert.match(await b.page.locator('[data-testid=stream-error]').innerText(), /port must be an integer from 0 to 65535/);
	await b.page.locator('[data-testid=filter-clear]').click();
});
