// Runs an upstream e2e suite against the local cluster with Weir installed from deploy/
// as its only CNI, as on kind: build what is missing (cached), start the cluster with
// no CNI, load the agent image, `kubectl apply -k deploy/`, import the suite's images,
// run e2e.test through the ginkgo CLI, read its JSON report, tear the cluster down
// (also on failure).
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildComponents, startCluster, type Cluster } from '../cluster/cluster.js';
import { CLUSTER_DOMAIN } from '../cluster/configs.js';
import { applyDeploy, loadAgentImage, noKubeProxyOverlay, waitWeirReady } from '../demo/install.js';
import { e2eBins, loadE2eImages } from './images.js';
import { NETPOL_FOCUS, NETPOL_QUICK_FOCUS, NETPOL_SKIP } from './netpol.js';
import { formatDuration, summarize, type SuiteSummary } from './report.js';

type Log = (m: string) => void;

export interface E2eOptions {
	suite: 'netpol';
	/** the CI subset (NETPOL_QUICK) instead of the whole suite */
	quick?: boolean;
	/** replaces the suite's focus (the skip list still applies) */
	focus?: string;
	/** Ginkgo parallel processes. Default 1. */
	procs?: number;
	/** cluster name (every resource is named after it). Default 'e2e'. */
	name?: string;
	/** where the reports and logs go (created). */
	reportDir: string;
	/** Start the nodes with kube-proxy. Default true. */
	kubeProxy?: boolean;
	log?: Log;
	/** Aborting (Ctrl-C in the CLI) stops the suite; the cluster is torn down all the same. */
	signal?: AbortSignal;
}

export interface E2eResult {
	summary: SuiteSummary;
	focus: string;
	skip: string;
	procs: number;
	reportDir: string;
	/** seconds per phase, and in total */
	times: { build: number; cluster: number; install: number; suite: number; total: number };
	ginkgoExit: number;
}

/** Ginkgo's own deadline for the whole suite (its default is 1 h). */
const SUITE_TIMEOUT = '4h';

function selection(o: E2eOptions): { focus: string; skip: string } {
	return { focus: o.focus ?? (o.quick ? NETPOL_QUICK_FOCUS : NETPOL_FOCUS), skip: NETPOL_SKIP };
}

/** The command line: the ginkgo CLI running the prebuilt e2e.test, then the framework's flags after `--`. */
export function ginkgoArgv(c: Pick<Cluster, 'kubeconfig' | 'bins'>, o: { focus: string; skip: string; procs: number; reportDir: string }): string[] {
	const bins = e2eBins();
	return [
		bins.ginkgo,
		`--procs=${o.procs}`,
		'--no-color',
		'-v',
		'--silence-skips',
		`--focus=${o.focus}`,
		`--skip=${o.skip}`,
		`--timeout=${SUITE_TIMEOUT}`,
		`--output-dir=${o.reportDir}`,
		'--json-report=report.json',
		'--junit-report=junit.xml',
		bins.e2eTest,
		'--',
		`--kubeconfig=${c.kubeconfig}`,
		'--provider=local',
		`--kubectl-path=${c.bins.kubectl}`,
		`--e2e-output-dir=${join(o.reportDir, 'output')}`,
		`--dns-domain=${CLUSTER_DOMAIN}`,
		'--dump-logs-on-failure=false',
		'--disable-log-dump',
	];
}

/**
 * Progress from ginkgo -v output. A spec's block starts with its text (and labels,
 * "[sig-network, Feature:NetworkPolicy]") and ends with a line like "• [12.3 seconds]"
 * or "• [FAILED] [40.1 seconds]"; returns one line per finished spec.
 */
export function progressLines(): (line: string) => string | undefined {
	let spec: string | undefined;
	return (line) => {
		if (/^\[sig-/.test(line)) {
			spec = line.replace(/ \[sig-[^\]]*\]$/, '').trim();
			return undefined;
		}
		const m = /^(?:•|S|P) (?:\[(FAILED|SKIPPED|PANICKED|TIMEDOUT|INTERRUPTED|PENDING)\] )?\[([\d.]+) seconds\]/.exec(line);
		if (m && spec) {
			const out = `${(m[1] ?? 'PASSED').padEnd(7)} ${Number(m[2]).toFixed(0).padStart(4)} s  ${spec}`;
			spec = undefined;
			return out;
		}
		return undefined;
	};
}

async function runGinkgo(argv: string[], reportDir: string, log: Log, signal?: AbortSignal): Promise<number> {
	const out = createWriteStream(join(reportDir, 'ginkgo.log'));
	const next = progressLines();
	return new Promise((resolve, reject) => {
		// Its own process group: an abort kills ginkgo and the e2e.test processes it runs.
		const child = spawn(argv[0]!, argv.slice(1), { cwd: reportDir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
		const abort = (): void => {
			if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
		};
		signal?.addEventListener('abort', abort, { once: true });
		let buf = '';
		const onData = (d: Buffer): void => {
			out.write(d);
			buf += d.toString();
			let i: number;
			while ((i = buf.indexOf('\n')) >= 0) {
				const p = next(buf.slice(0, i));
				buf = buf.slice(i + 1);
				if (p) log(p);
			}
		};
		child.stdout.on('data', onData);
		child.stderr.on('data', onData);
		child.on('error', reject);
		child.on('close', (code) => {
			signal?.removeEventListener('abort', abort);
			out.end(() => (signal?.aborted ? reject(new Error('interrupted')) : resolve(code ?? 1)));
		});
	});
}

/** Runs the suite; the cluster is always torn down before this returns. */
export async function runE2e(o: E2eOptions): Promise<E2eResult> {
	const log = o.log ?? ((m: string) => process.stderr.write(`[e2e] ${m}\n`));
	const procs = o.procs ?? 1;
	const { focus, skip } = selection(o);
	const t0 = Date.now();
	const since = (t: number): number => (Date.now() - t) / 1000;
	mkdirSync(join(o.reportDir, 'output'), { recursive: true });

	if (!existsSync(e2eBins().complete)) {
		log('building e2e.test, agnhost and ginkgo from k8s.io/kubernetes (first run only; progress follows)');
		await buildComponents(['e2e'], log);
	}
	const build = since(t0);

	const t1 = Date.now();
	log(`starting cluster "${o.name ?? 'e2e'}" with no CNI${o.kubeProxy === false ? ' and no kube-proxy' : ''}`);
	const c = await startCluster({ name: o.name ?? 'e2e', cni: 'none', coreDns: false, kubeProxy: o.kubeProxy ?? true, log });
	const interrupted = (): void => {
		if (o.signal?.aborted) throw new Error('interrupted');
	};
	let result: E2eResult;
	try {
		interrupted();
		const cluster = since(t1);
		const t2 = Date.now();
		await loadAgentImage(c, log);
		if (c.kubeProxy) {
			log('installing Weir: kubectl apply -k deploy/');
			await applyDeploy(c);
		} else {
			const overlay = noKubeProxyOverlay(join(o.reportDir, 'deploy-no-kube-proxy'), c.apiServerAddress);
			log(`installing Weir: kubectl apply -k ${overlay} (deploy/no-kube-proxy/ with this cluster's API server address)`);
			await applyDeploy(c, overlay);
		}
		await waitWeirReady(c, log);
		await loadE2eImages(c, log);
		const install = since(t2);
		interrupted();

		const t3 = Date.now();
		const argv = ginkgoArgv(c, { focus, skip, procs, reportDir: o.reportDir });
		writeFileSync(join(o.reportDir, 'command.txt'), `${argv.map(shellQuote).join(' ')}\n`);
		log(`running e2e.test with ${procs} ginkgo process${procs > 1 ? 'es' : ''}; skip ${skip}`);
		log(`full output: ${join(o.reportDir, 'ginkgo.log')}`);
		const ginkgoExit = await runGinkgo(argv, o.reportDir, log, o.signal);
		const suite = since(t3);
		const reportFile = join(o.reportDir, 'report.json');
		if (!existsSync(reportFile)) throw new Error(`ginkgo exited ${ginkgoExit} without writing ${reportFile}; see ${join(o.reportDir, 'ginkgo.log')}`);
		const summary = summarize(readFileSync(reportFile, 'utf8'), new RegExp(focus));
		result = { summary, focus, skip, procs, reportDir: o.reportDir, times: { build, cluster, install, suite, total: 0 }, ginkgoExit };
	} finally {
		log(`stopping cluster "${c.name}"`);
		const rep = await c.stop();
		if (rep.left.length) log(`left behind: ${rep.left.join('; ')}`);
	}
	result.times.total = since(t0);
	writeFileSync(join(o.reportDir, 'summary.json'), JSON.stringify(result, null, 2));
	return result;
}

function shellQuote(a: string): string {
	return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/** The lines a run ends with: counts, time, failures, where the reports are. */
export function formatResult(r: E2eResult): string {
	const s = r.summary;
	const lines = [
		`${s.passed.length} passed, ${s.failed.length} failed, ${s.skipped.length} skipped ` +
			`(${s.passed.length + s.failed.length + s.skipped.length} specs selected by the focus; ${r.procs} ginkgo process${r.procs > 1 ? 'es' : ''})`,
		`time: ${formatDuration(r.times.total)} in total: build ${formatDuration(r.times.build)}, cluster ${formatDuration(r.times.cluster)}, ` +
			`Weir install and images ${formatDuration(r.times.install)}, suite ${formatDuration(r.times.suite)}`,
	];
	for (const f of s.suiteFailures) lines.push(`SUITE FAILURE in ${f.name}: ${f.message ?? f.state}`);
	if (s.failed.length) {
		lines.push('failed:');
		for (const f of s.failed) lines.push(`  ${f.name}\n    ${(f.message ?? f.state).split('\n').join('\n    ')}`);
	}
	lines.push(`reports: ${join(r.reportDir, 'junit.xml')}, ${join(r.reportDir, 'report.json')}, ${join(r.reportDir, 'ginkgo.log')}`);
	return lines.join('\n');
}
