// The flow UI and the relay on the local two-node cluster, Weir installed from deploy/
// (weir-controller included), the segregation scenario with its NetworkPolicy: `weir
// observe` through the relay without --server, then the web UI in real headless
// Chromium through `weir ui` (the API server's service proxy): the map shows apache ->
// redis in the drop colour and app -> redis forwarded, the drop's row names
// d-redis/redis-allow-c-app, filters narrow the table, new traffic shows up live, and a
// node whose agent is stopped (its container paused) shows as unavailable while the
// other keeps streaming. Screenshots in test-results/ (docs/ui-map.png is one of them).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterStatus, startCluster, type Cluster } from '../../hack/cluster/cluster.js';
import { waitFor } from '../../hack/cluster/exec.js';
import { leftovers } from '../../hack/cluster/resources.js';
import { agentDiagnostics, applyDeploy, loadAgentImage, waitControllerReady, waitWeirReady, WEIR_NS } from '../../hack/demo/install.js';
import { deployScenario, placement, POLICY_NAME, probe, redisPolicy, waitScenario, formatProbe, type PodRef } from '../../hack/demo/scenario.js';
import { startUiForward, type UiForward } from '../../hack/demo/ui-forward.js';
import { weirCli } from '../../hack/demo/weir-cli.js';
import { openBrowser, type Browser } from '../helpers/browser.js';

const NAME = 'wui';
const DROP = 'rgb(214, 51, 108)';
const FWD = 'rgb(43, 138, 62)';
let c: Cluster | undefined;
let pids: number[] = [];
let pods = new Map<string, PodRef>();
let ui: UiForward | undefined;
let b: Browser | undefined;

function cluster(): Cluster {
	assert.ok(c, 'the cluster did not start');
	return c;
}

function browser(): Browser {
	assert.ok(b, 'the browser did not open');
	return b;
}

before(async () => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	const log = (m: string): void => void process.stderr.write(`# ${m}\n`);
	c = await startCluster({ name: NAME, cni: 'none', coreDns: false, log: () => {} });
	pids = clusterStatus(NAME).processes.map((p) => p.pid);
	await loadAgentImage(c, log);
	await applyDeploy(c);
	await waitWeirReady(c, log, 240_000);
	await waitControllerReady(c, log);
	await deployScenario(c, placement(c.nodes.map((n) => n.name)));
	try {
		pods = await waitScenario(c, 180_000, log);
	} catch (err) {
		log(await agentDiagnostics(c));
		throw err;
	}
	const [apache, app, redis] = ['apache', 'app', 'redis'].map((n) => pods.get(n)!) as [PodRef, PodRef, PodRef];
	for (const from of [app, apache]) log(formatProbe(await probe(c, from, redis, 6379)));
	await c.kubectl(['apply', '-f', '-'], { input: JSON.stringify(redisPolicy()) });
	await waitFor('the policy enforced', 30_000, async () => ((await probe(cluster(), apache, redis, 6379)).ok ? undefined : true), 500);
	const ok = await probe(c, app, redis, 6379);
	log(formatProbe(ok));
	assert.ok(ok.ok, 'app reaches redis with the policy');
	ui = await startUiForward(c, 0);
	log(`weir ui: ${ui.url}`);
	b = await openBrowser({ width: 1400, height: 900 });
	b.page.on('pageerror', (e) => log(`page error: ${e.message}`));
	await b.page.goto(ui.url);
});

after(async () => {
	await b?.close();
	if (c) {
		const rep = await c.stop();
		assert.deepEqual(rep.left, [], 'the cluster left nothing behind');
		assert.deepEqual(await leftovers(NAME, pids), []);
	}
});

test('weir observe goes through the relay by default: the drop with its reason and policy, cluster-wide', { timeout: 120_000 }, async (t) => {
	const k = cluster();
	const drop = await weirCli(['observe', '--kubeconfig', k.kubeconfig, '--to-namespace', 'd-redis', '--verdict', 'DROPPED', '--last', '50']);
	t.diagnostic(drop.out);
	assert.equal(drop.code, 0, drop.out);
	assert.match(drop.out, /b-apache\/apache-\S+ -> d-redis\/redis-\S+:6379 .*DROPPED \(POLICY_DENIED: .*isolated by d-redis\/redis-allow-c-app\)/);
	const fwd = await weirCli([
		'observe',
		'--kubeconfig',
		k.kubeconfig,
		'--from-namespace',
		'c-app',
		'--to-port',
		'6379',
		'--verdict',
		'FORWARDED',
		'-o',
		'table',
	]);
	t.diagnostic(fwd.out);
	assert.match(fwd.out, /^TIME\s+NODE\s+SOURCE/m);
	assert.match(fwd.out, /c-app\/app-\S+\s+d-redis\/redis-\S+:6379\s+.*FORWARDED\s+allowed by d-redis\/redis-allow-c-app ingress\[0\]/);
	const nodes = JSON.parse((await weirCli(['observe', '--kubeconfig', k.kubeconfig, '-o', 'json', '--last', '1'])).out.trim().split('\n')[0] ?? '{}') as {
		node?: string;
	};
	assert.ok(nodes.node, 'flows carry their node');
});

const edge = (src: string, dst: string) => browser().page.locator(`[data-testid=map-edge][data-source="${src}"][data-destination="${dst}"][data-port="6379"]`);

async function rowTexts(): Promise<string[]> {
	return browser()
		.page.locator('[data-testid=flow-row]')
		.evaluateAll((els) => els.map((e) => (e as HTMLElement).innerText.replace(/\s+/g, ' ')));
}

test('the map: apache -> redis in the drop colour, app -> redis forwarded', { timeout: 60_000 }, async () => {
	const p = browser().page;
	await edge('b-apache/apache', 'd-redis/redis').waitFor({ timeout: 30_000 });
	await edge('c-app/app', 'd-redis/redis').waitFor({ timeout: 30_000 });
	const drop = edge('b-apache/apache', 'd-redis/redis');
	const fwd = edge('c-app/app', 'd-redis/redis');
	assert.equal(await drop.getAttribute('data-verdict'), 'DROPPED');
	assert.equal(await fwd.getAttribute('data-verdict'), 'FORWARDED');
	assert.equal(await drop.locator('path[marker-end]').evaluate((x) => getComputedStyle(x).stroke), DROP);
	assert.equal(await fwd.locator('path[marker-end]').evaluate((x) => getComputedStyle(x).stroke), FWD);
	await p.waitForTimeout(500);
	await browser().screenshot('cluster-ui-map');
	// The scenario's namespaces only (docs/ui-map.png is this one).
	await p.locator('[data-testid=namespace-button]').click();
	for (const ns of ['a-ingress', 'b-apache', 'c-app', 'd-redis']) await p.locator(`[data-testid=namespace-${ns}]`).check();
	await p.locator('[data-testid=namespace-button]').click();
	await waitFor('the map of the scenario', 20_000, async () => {
		const srcs = await p.locator('[data-testid=map-edge]').evaluateAll((els) => els.map((e) => e.getAttribute('data-source') ?? ''));
		return srcs.length > 0 && srcs.every((x) => /^(a-ingress|b-apache|c-app|d-redis)\//.test(x)) ? true : undefined;
	});
	assert.equal(await drop.getAttribute('data-verdict'), 'DROPPED');
	await p.locator('[data-testid=flow-row][data-verdict=DROPPED]').first().click();
	await p.waitForTimeout(300);
	await browser().screenshot('cluster-ui-scenario');
	await p.getByRole('button', { name: 'close details' }).click();
	await p.locator('[data-testid=namespace-button]').click();
	await p.locator('[data-testid=namespace-all]').check();
	await p.locator('[data-testid=namespace-button]').click();
});

test('the row of the drop names d-redis/redis-allow-c-app; its details give the full reference', { timeout: 60_000 }, async () => {
	const p = browser().page;
	const texts = await waitFor(
		'the drop in the table',
		30_000,
		async () => {
			const ts = await rowTexts();
			return ts.some((t) => t.includes('b-apache/apache') && t.includes('DROPPED')) ? ts : undefined;
		},
		250,
	);
	const row = texts.find((t) => t.includes('b-apache/apache') && t.includes('d-redis/redis') && t.includes('DROPPED'))!;
	assert.match(row, new RegExp(`6379/TCP SYN DROPPED POLICY_DENIED denied: d-redis/${POLICY_NAME}`));
	await p.locator('[data-testid=pause]').click(); // the rows stand still under the click
	await p.locator('[data-testid=flow-row][data-verdict=DROPPED]', { hasText: 'b-apache/apache' }).first().click();
	const d = p.locator('[data-testid=flow-details]');
	assert.equal(await d.locator('[data-testid=detail-policy]').innerText(), `denied: isolated by NetworkPolicy d-redis/${POLICY_NAME}`);
	assert.equal(await d.locator('[data-testid=detail-node]').innerText(), pods.get('redis')!.node);
	assert.match(await d.innerText(), /app=apache/);
	await browser().screenshot('cluster-ui-details');
	await d.getByRole('button', { name: 'close details' }).click();
	await p.locator('[data-testid=pause]').click();
});

test('filters narrow the table: drops only, then one namespace', { timeout: 60_000 }, async () => {
	const p = browser().page;
	await p.locator('[data-testid=filter-verdict]').selectOption('DROPPED');
	await waitFor('only drops', 20_000, async () => {
		const ts = await rowTexts();
		return ts.length > 0 && ts.every((t) => / DROPPED /.test(t)) ? true : undefined;
	});
	await p.locator('[data-testid=filter-verdict]').selectOption('');
	await p.locator('[data-testid=namespace-button]').click();
	await p.locator('[data-testid=namespace-c-app]').check();
	await p.locator('[data-testid=namespace-button]').click();
	await waitFor('only c-app', 20_000, async () => {
		const ts = await rowTexts();
		return ts.length > 0 && ts.every((t) => t.includes('c-app/')) ? true : undefined;
	});
	await p.locator('[data-testid=namespace-button]').click();
	await p.locator('[data-testid=namespace-all]').check();
	await p.locator('[data-testid=namespace-button]').click();
});

test('the view updates live when new traffic flows', { timeout: 90_000 }, async () => {
	const p = browser().page;
	const app = pods.get('app')!;
	const redis = pods.get('redis')!;
	await p.locator('[data-testid=filter-pod]').fill(`c-app/${app.pod}`);
	await p.locator('[data-testid=filter-pod]').press('Enter');
	const before = await waitFor('app rows', 20_000, async () => {
		const ts = await rowTexts();
		return ts.length > 0 && ts.every((t) => t.includes('c-app/app')) ? ts.length : undefined;
	});
	const edgeBefore = Number(await edge('c-app/app', 'd-redis/redis').getAttribute('data-forwarded'));
	assert.ok((await probe(cluster(), app, redis, 6379)).ok);
	await waitFor('a new row without a reload', 30_000, async () => ((await rowTexts()).length > before ? true : undefined), 250);
	await waitFor('the edge count grows', 30_000, async () =>
		Number(await edge('c-app/app', 'd-redis/redis').getAttribute('data-forwarded')) > edgeBefore ? true : undefined,
	);
	await p.locator('[data-testid=filter-clear]').click();
});

test('a node whose agent is stopped shows as unavailable; the rest keeps working', { timeout: 180_000 }, async (t) => {
	const k = cluster();
	const p = browser().page;
	const redis = pods.get('redis')!;
	const apache = pods.get('apache')!;
	const stopped = k.nodes.map((n) => n.name).find((n) => n !== redis.node)!;
	const id = (
		await k.kubectl([
			'-n',
			WEIR_NS,
			'get',
			'pods',
			'-l',
			'app.kubernetes.io/name=weir-agent',
			'--field-selector',
			`spec.nodeName=${stopped}`,
			'-o',
			'jsonpath={.items[0].status.containerStatuses[?(@.name=="agent")].containerID}',
		])
	).stdout.replace(/^containerd:\/\//, '');
	assert.ok(id, 'the agent container');
	const ctr = (verb: string) => k.nodeExec(stopped, ['ctr', '--address', '/run/containerd/containerd.sock', '--namespace', 'k8s.io', 'task', verb, id]);
	// Stopped, not killed: its container is frozen, so its socket still accepts and answers nothing.
	await ctr('pause');
	try {
		await p.locator(`[data-testid=node-status][data-node=${stopped}][data-state=unavailable]`).waitFor({ timeout: 30_000 });
		assert.equal(await p.locator(`[data-testid=node-status][data-node=${redis.node}]`).getAttribute('data-state'), 'connected');
		t.diagnostic(await p.locator(`[data-testid=node-status][data-node=${stopped}]`).innerText());
		// The other node still streams: a new drop at redis's node shows up.
		await p.locator('[data-testid=filter-verdict]').selectOption('DROPPED');
		const before = await waitFor('drops listed', 20_000, async () => {
			const ts = await rowTexts();
			return ts.length > 0 && ts.every((x) => / DROPPED /.test(x)) ? ts.length : undefined;
		});
		assert.equal((await probe(k, apache, redis, 6379)).ok, false, 'still enforced');
		await waitFor('the new drop in the table', 30_000, async () => ((await rowTexts()).length > before ? true : undefined), 250);
		await browser().screenshot('cluster-ui-node-unavailable');
	} finally {
		await ctr('resume');
	}
	await p.locator(`[data-testid=node-status][data-node=${stopped}][data-state=connected]`).waitFor({ timeout: 60_000 });
	await p.locator('[data-testid=filter-clear]').click();
});
