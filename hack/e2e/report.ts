// Reading a Ginkgo v2 JSON report (ginkgo --json-report) into the figures a run prints:
// pure functions of the report's text, so they are tested without a cluster.
//
// The report holds every spec of the suite binary, also the thousands the focus never
// selected (state "skipped"); the counts here are over the specs whose full text
// matches the run's focus, so "skipped" means "selected by the focus, left out by the
// skip list" (or skipped by the spec itself at run time).

/** The parts of Ginkgo's types.SpecReport read here. */
interface GinkgoSpecReport {
	ContainerHierarchyTexts?: string[] | null;
	LeafNodeType?: string;
	LeafNodeText?: string;
	State?: string;
	/** nanoseconds */
	RunTime?: number;
	Failure?: { Message?: string; Location?: { FileName?: string; LineNumber?: number } };
}

interface GinkgoReport {
	SuiteDescription?: string;
	SuiteSucceeded?: boolean;
	/** nanoseconds */
	RunTime?: number;
	SpecReports?: GinkgoSpecReport[] | null;
}

export interface SpecOutcome {
	name: string;
	state: string;
	seconds: number;
	/** the failure message's first lines, for failed specs and failed suite nodes */
	message?: string;
	location?: string;
}

export interface SuiteSummary {
	passed: SpecOutcome[];
	failed: SpecOutcome[];
	skipped: SpecOutcome[];
	/** BeforeSuite/AfterSuite nodes that failed (every spec fails with them) */
	suiteFailures: SpecOutcome[];
	/** the suite's own run time in seconds, as Ginkgo measured it */
	seconds: number;
}

const FAILED_STATES = new Set(['failed', 'panicked', 'timedout', 'interrupted', 'aborted']);

/** Ginkgo's SpecReport.FullText(): the container texts and the leaf text, joined by spaces. */
export function fullText(s: GinkgoSpecReport): string {
	return [...(s.ContainerHierarchyTexts ?? []), s.LeafNodeText ?? ''].filter(Boolean).join(' ');
}

function firstLines(text: string, n = 6): string {
	return text
		.split('\n')
		.map((l) => l.trimEnd())
		.filter(Boolean)
		.slice(0, n)
		.join('\n');
}

function outcome(s: GinkgoSpecReport): SpecOutcome {
	const o: SpecOutcome = { name: fullText(s) || String(s.LeafNodeType), state: s.State ?? 'unknown', seconds: (s.RunTime ?? 0) / 1e9 };
	if (s.Failure?.Message) o.message = firstLines(s.Failure.Message);
	if (s.Failure?.Location?.FileName) o.location = `${s.Failure.Location.FileName}:${s.Failure.Location.LineNumber ?? 0}`;
	return o;
}

/** Counts the specs of a JSON report (one suite or several) that match `focus`. */
export function summarize(reportJson: string, focus: RegExp): SuiteSummary {
	const parsed = JSON.parse(reportJson) as GinkgoReport[] | GinkgoReport;
	const reports = Array.isArray(parsed) ? parsed : [parsed];
	const sum: SuiteSummary = { passed: [], failed: [], skipped: [], suiteFailures: [], seconds: 0 };
	for (const r of reports) {
		sum.seconds += (r.RunTime ?? 0) / 1e9;
		for (const s of r.SpecReports ?? []) {
			if (s.LeafNodeType && s.LeafNodeType !== 'It') {
				if (FAILED_STATES.has(s.State ?? '')) sum.suiteFailures.push(outcome(s));
				continue;
			}
			if (!focus.test(fullText(s))) continue;
			const o = outcome(s);
			if (o.state === 'passed') sum.passed.push(o);
			else if (FAILED_STATES.has(o.state)) sum.failed.push(o);
			else sum.skipped.push(o);
		}
	}
	return sum;
}

/** A regular expression (Go RE2 and JavaScript alike) matching `text` literally. */
export function literal(text: string): string {
	return text.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

export function formatDuration(seconds: number): string {
	const s = Math.round(seconds);
	const m = Math.floor(s / 60);
	return m > 0 ? `${m} min ${String(s % 60).padStart(2, '0')} s` : `${s} s`;
}
