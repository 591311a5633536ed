// Takes Istio's AuthorizationPolicy and PeerAuthentication CRDs, byte for byte, out of
// istio.io/api's kubernetes/customresourcedefinitions.gen.yaml and writes them with a
// header naming their source (hack/crds/update-istio-crds.sh runs this).
//   node dist/hack/crds/extract-istio-crds.js --source FILE --module istio.io/api@vX --sum h1:… --out FILE
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse } from 'yaml';

/** The CRDs Weir's ztunnel reads, in the order they are written. */
export const ISTIO_SECURITY_CRDS = ['authorizationpolicies.security.istio.io', 'peerauthentications.security.istio.io'] as const;

interface Crd {
	kind?: string;
	metadata?: { name?: string };
	spec?: { group?: string; versions?: Array<{ name?: string; served?: boolean }> };
}

/** The upstream documents named in ISTIO_SECURITY_CRDS, as their original text. */
export function extractCrds(source: string): string[] {
	const docs = source.split(/^---[ \t]*$/m);
	return ISTIO_SECURITY_CRDS.map((name) => {
		const hits = docs.filter((d) => (parse(d) as Crd | null)?.metadata?.name === name);
		if (hits.length !== 1) throw new Error(`${name}: ${hits.length} documents in the source, expected 1`);
		const doc = hits[0]!.replace(/^\n+/, '').replace(/\n*$/, '\n');
		const crd = parse(doc) as Crd;
		const served = (crd.spec?.versions ?? []).filter((v) => v.served).map((v) => v.name);
		if (crd.kind !== 'CustomResourceDefinition' || crd.spec?.group !== 'security.istio.io' || !served.includes('v1') || !served.includes('v1beta1')) {
			throw new Error(`${name} is not a security.istio.io CustomResourceDefinition serving v1 and v1beta1`);
		}
		return doc;
	});
}

export function header(module: string, sum: string, sourceSha256: string): string {
	return [
		`# Istio's CustomResourceDefinitions, unmodified:`,
		...ISTIO_SECURITY_CRDS.map((n) => `#   ${n}`),
		`# from kubernetes/customresourcedefinitions.gen.yaml of the Go module ${module}`,
		`#   module sum  ${sum}`,
		`#   file sha256 ${sourceSha256}`,
		`# Copyright Istio Authors; licensed under the Apache License, Version 2.0`,
		`# (https://www.apache.org/licenses/LICENSE-2.0), the module's LICENSE.`,
		`# Written by hack/crds/update-istio-crds.sh: do not edit. weir-controller creates each`,
		`# CRD that the cluster does not have yet and leaves an existing one (an Istio install's)`,
		`# alone (src/controller/crds.ts, docs/ztunnel.md).`,
		'',
	].join('\n');
}

function main(): void {
	const { values } = parseArgs({ options: { source: { type: 'string' }, module: { type: 'string' }, sum: { type: 'string' }, out: { type: 'string' } } });
	if (!values.source || !values.module || !values.sum || !values.out) throw new Error('usage: --source FILE --module PATH@VERSION --sum H1 --out FILE');
	const text = readFileSync(values.source, 'utf8');
	const sha = createHash('sha256').update(text).digest('hex');
	const docs = extractCrds(text);
	writeFileSync(values.out, header(values.module, values.sum, sha) + docs.map((d) => `---\n${d}`).join(''));
	process.stderr.write(`wrote ${values.out}: ${ISTIO_SECURITY_CRDS.join(', ')} from ${values.module}\n`);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) main();
