// The upstream NetworkPolicy e2e suite's quick subset (hack/e2e/netpol.ts NETPOL_QUICK)
// against the local cluster with Weir installed from deploy/ as its only CNI: what
// `scripts/e2e.sh netpol --quick` runs, through the same harness. Zero failures and at
// least one passed spec; the cluster is gone afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { leftovers } from '../../hack/cluster/resources.js';
import { NETPOL_QUICK } from '../../hack/e2e/netpol.js';
import { formatResult, runE2e } from '../../hack/e2e/run.js';

const NAME = 'tnetpol';

test('upstream netpol e2e, quick subset, Weir from deploy/: no failures', { timeout: 3_600_000 }, async (t) => {
	assert.equal(process.getuid?.(), 0, 'the cluster tier needs root');
	const reportDir = mkdtempSync(join(tmpdir(), 'weir-netpol-e2e-'));
	const r = await runE2e({ suite: 'netpol', quick: true, name: NAME, reportDir, log: (m) => t.diagnostic(m) });
	t.diagnostic(formatResult(r));
	// The reports stay for a failure (the diagnostic above names them); a pass removes them.
	const failed = r.summary.failed.length + r.summary.suiteFailures.length > 0;
	if (!failed) rmSync(reportDir, { recursive: true, force: true });
	assert.deepEqual(r.summary.suiteFailures, [], 'the suite set up');
	assert.deepEqual(
		r.summary.failed.map((f) => `${f.name}: ${f.message ?? f.state}`),
		[],
		'no spec failed',
	);
	assert.equal(r.summary.passed.length, NETPOL_QUICK.length, 'every quick spec ran and passed');
	assert.deepEqual(await leftovers(NAME), [], 'the cluster was torn down');
});
