// The e2e harness's pure parts: reading a Ginkgo JSON report into counts, the quick
// subset's focus, the progress lines taken from ginkgo -v output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fullText, literal, summarize } from '../../hack/e2e/report.js';
import { NETPOL_FOCUS, NETPOL_QUICK, NETPOL_QUICK_FOCUS, NETPOL_SKIP, NETPOL_SKIPS } from '../../hack/e2e/netpol.js';
import { progressLines } from '../../hack/e2e/run.js';

const NP = ['[sig-network] Netpol', 'NetworkPolicy between server and client'];

function spec(texts: string[], leaf: string, state: string, extra: Record<string, unknown> = {}): object {
	return { ContainerHierarchyTexts: texts, LeafNodeType: 'It', LeafNodeText: leaf, State: state, RunTime: 2_500_000_000, ...extra };
}

test('summarize counts only the specs the focus selects; filtered-out specs are not "skipped"', () => {
	const report = JSON.stringify([
		{
			SuiteDescription: 'Kubernetes e2e suite',
			RunTime: 90e9,
			SpecReports: [
				{ LeafNodeType: 'SynchronizedBeforeSuite', State: 'passed' },
				spec(NP, "should support a 'default-deny-ingress' policy [Feature:NetworkPolicy]", 'passed'),
				spec(NP, 'should allow egress access on one named port [Feature:NetworkPolicy]', 'failed', {
					Failure: { Message: 'Had 9 wrong results in reachability matrix\nmore', Location: { FileName: 'test_helper.go', LineNumber: 153 } },
				}),
				spec(NP, 'should enforce updated policy [Feature:NetworkPolicy]', 'timedout'),
				spec(
					['[sig-network] Netpol [Feature:SCTPConnectivity] [LinuxOnly]', 'NetworkPolicy between server and client using SCTP'],
					'should enforce policy based on Ports [Feature:NetworkPolicy]',
					'skipped',
				),
				spec(['[sig-storage] CSI'], 'should mount', 'skipped'),
				spec(['[sig-node] Pods'], 'should run', 'skipped'),
			],
		},
	]);
	const s = summarize(report, new RegExp(NETPOL_FOCUS));
	assert.equal(s.passed.length, 1);
	assert.deepEqual(
		s.failed.map((f) => f.state),
		['failed', 'timedout'],
	);
	assert.equal(s.failed[0]!.message, 'Had 9 wrong results in reachability matrix\nmore');
	assert.equal(s.failed[0]!.location, 'test_helper.go:153');
	assert.equal(s.skipped.length, 1, 'the SCTP spec: selected by the focus, left out by the skip list');
	assert.deepEqual(s.suiteFailures, []);
	assert.equal(s.seconds, 90);
	assert.equal(s.passed[0]!.seconds, 2.5);
});

test('a failed BeforeSuite is reported as a suite failure', () => {
	const report = JSON.stringify({ SpecReports: [{ LeafNodeType: 'SynchronizedBeforeSuite', State: 'failed', Failure: { Message: 'nodes not ready' } }] });
	const s = summarize(report, /Netpol/);
	assert.equal(s.suiteFailures.length, 1);
	assert.equal(s.suiteFailures[0]!.message, 'nodes not ready');
});

test('the quick focus selects each quick spec by its full name, and no UDP or SCTP variant', () => {
	const focus = new RegExp(NETPOL_QUICK_FOCUS);
	assert.ok(NETPOL_QUICK.length >= 5 && NETPOL_QUICK.length <= 10);
	for (const q of NETPOL_QUICK) {
		const leaf = q.name.slice(`${NP.join(' ')} `.length);
		assert.ok(focus.test(fullText({ ContainerHierarchyTexts: NP, LeafNodeText: `${leaf} [Feature:NetworkPolicy]` })), q.name);
		const udp = fullText({
			ContainerHierarchyTexts: ['[sig-network] Netpol [LinuxOnly]', 'NetworkPolicy between server and client using UDP'],
			LeafNodeText: `${leaf} [Feature:NetworkPolicy]`,
		});
		assert.ok(!focus.test(udp), `not the UDP variant: ${udp}`);
		assert.ok(new RegExp(NETPOL_FOCUS).test(q.name), 'inside the suite');
	}
	assert.ok(
		!focus.test(`${NP.join(' ')} should enforce policy based on Ports and more [Feature:NetworkPolicy]`),
		'a longer name with the same start is not selected',
	);
});

test('the skip list leaves out SCTP and IPv6 only, each with a reason', () => {
	const skip = new RegExp(NETPOL_SKIP);
	assert.ok(skip.test('[sig-network] Netpol [Feature:SCTPConnectivity] [LinuxOnly] NetworkPolicy between server and client using SCTP should support a'));
	assert.ok(
		!skip.test(
			"[sig-network] Netpol NetworkPolicy between server and client should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP [Feature:NetworkPolicy]",
		),
	);
	assert.ok(!skip.test('[sig-network] Netpol [LinuxOnly] NetworkPolicy between server and client using UDP should support a'));
	for (const s of NETPOL_SKIPS) assert.ok(s.reason.length > 20, s.pattern);
});

test('literal() escapes what RE2 and JavaScript treat as special', () => {
	const name = "should support a 'default-deny-ingress' policy (x|y) [a.b] $1 ^*+?{}\\";
	assert.ok(new RegExp(`^${literal(name)}$`).test(name));
});

test('progress: one line per finished spec from ginkgo -v output', () => {
	const next = progressLines();
	const out = [
		'------------------------------',
		"[sig-network] Netpol NetworkPolicy between server and client should support a 'default-deny-ingress' policy [Feature:NetworkPolicy] [sig-network, Feature:NetworkPolicy]",
		'k8s.io/kubernetes@v1.35.4/test/e2e/network/netpol/network_policy.go:121',
		'  STEP: Creating a network policy ...',
		'• [48.212 seconds]',
		'[sig-network] Netpol NetworkPolicy between server and client should enforce updated policy [Feature:NetworkPolicy] [sig-network, Feature:NetworkPolicy]',
		'• [FAILED] [95.004 seconds]',
	]
		.map(next)
		.filter(Boolean);
	assert.deepEqual(out, [
		"PASSED    48 s  [sig-network] Netpol NetworkPolicy between server and client should support a 'default-deny-ingress' policy [Feature:NetworkPolicy]",
		'FAILED    95 s  [sig-network] Netpol NetworkPolicy between server and client should enforce updated policy [Feature:NetworkPolicy]',
	]);
});
