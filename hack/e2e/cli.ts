#!/usr/bin/env node
// node dist/hack/e2e/cli.js netpol [--quick] [--focus REGEX] [--procs N] [--name N]
//                                  [--report-dir DIR] [--no-kube-proxy]
// (scripts/e2e.sh runs it after building Weir.) Exit 0 when no selected spec failed and
// at least one passed.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { repoRoot } from '../../src/shared/package.js';
import { NETPOL_QUICK, NETPOL_SKIPS } from './netpol.js';
import { formatResult, runE2e } from './run.js';

const USAGE = `usage: cli.js netpol [--quick] [--focus REGEX] [--procs N] [--name N] [--report-dir DIR] [--no-kube-proxy]
  --quick          the CI subset (${NETPOL_QUICK.length} specs)
  --focus REGEX    instead of the suite's focus (the skip list still applies)
  --procs N        ginkgo parallel processes (default 1)
  --name N         cluster name (default e2e)
  --report-dir DIR junit.xml, report.json, ginkgo.log, summary.json (default build/e2e/<suite>-<time>)
  --no-kube-proxy  nodes without kube-proxy (ClusterIPs only work if Weir replaces it)
  --list           print the skip list with reasons and the quick subset, run nothing`;

function stamp(): string {
	return new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

async function main(): Promise<number> {
	const [suite, ...rest] = process.argv.slice(2);
	const { values } = parseArgs({
		args: rest,
		options: {
			quick: { type: 'boolean', default: false },
			focus: { type: 'string' },
			procs: { type: 'string', default: '1' },
			name: { type: 'string', default: 'e2e' },
			'report-dir': { type: 'string' },
			'no-kube-proxy': { type: 'boolean', default: false },
			list: { type: 'boolean', default: false },
		},
	});
	if (suite !== 'netpol') {
		console.error(USAGE);
		return 2;
	}
	if (values.list) {
		console.log('skipped (pattern: reason):');
		for (const s of NETPOL_SKIPS) console.log(`  ${s.pattern}: ${s.reason}`);
		console.log('quick subset:');
		for (const q of NETPOL_QUICK) console.log(`  ${q.name}   (${q.covers})`);
		return 0;
	}
	const procs = Number(values.procs);
	if (!Number.isInteger(procs) || procs < 1) throw new Error(`--procs: a positive integer, not ${values.procs}`);
	const reportDir = values['report-dir'] ?? join(repoRoot, 'build', 'e2e', `${suite}${values.quick ? '-quick' : ''}-${stamp()}`);
	const log = (m: string): void => void process.stdout.write(`[e2e ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${m}\n`);
	const t0 = Date.now();
	// Ctrl-C or SIGTERM: ginkgo is stopped and the cluster torn down before the exit.
	const ac = new AbortController();
	for (const sig of ['SIGINT', 'SIGTERM'] as const) {
		process.once(sig, () => {
			log(`${sig}: stopping the suite and the cluster`);
			ac.abort();
		});
	}
	const r = await runE2e({
		suite,
		quick: values.quick ?? false,
		...(values.focus ? { focus: values.focus } : {}),
		procs,
		name: values.name ?? 'e2e',
		reportDir,
		kubeProxy: !values['no-kube-proxy'],
		log,
		signal: ac.signal,
	});
	console.log(`\n==> netpol e2e${values.quick ? ' (quick)' : ''}: ${formatResult(r)}`);
	return r.summary.failed.length === 0 && r.summary.suiteFailures.length === 0 && r.summary.passed.length > 0 ? 0 : 1;
}

main().then(
	(code) => process.exit(code),
	(err: unknown) => {
		console.error(`e2e: ${err instanceof Error ? err.message : String(err)}`);
		process.exit(1);
	},
);
