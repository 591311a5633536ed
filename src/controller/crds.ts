// Istio's AuthorizationPolicy and PeerAuthentication CRDs, which the node ztunnel's
// policy reads: weir-controller creates each one the cluster does not have, from the
// vendored deploy/crds/istio-security.yaml (hack/crds/update-istio-crds.sh), and leaves
// an existing one alone — an Istio install owns its CRDs, and `kubectl apply` of ours
// would overwrite them. Create-if-absent, like the CA's root Secret: a 409 means another
// writer was first, and that one is kept.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { repoRoot } from '../shared/package.js';

/** The vendored CRDs, shipped in the image beside dist/. */
export const ISTIO_CRDS_FILE = join(repoRoot, 'deploy', 'crds', 'istio-security.yaml');

export interface VendoredCrds {
	/** 'istio.io/api@v1.32.0', from the file's header */
	source: string;
	crds: k8s.V1CustomResourceDefinition[];
}

/** What weir-controller needs of the API server for this (kube.ts-style port; KubeCrds implements it). */
export interface CrdApi {
	/** Creates the CRD unless one of that name exists; true when this call created it. */
	createIfAbsent(crd: k8s.V1CustomResourceDefinition): Promise<boolean>;
	/** The existing CRD, or undefined when it cannot be read (absent, or no permission to get it). */
	read(name: string): Promise<k8s.V1CustomResourceDefinition | undefined>;
}

export interface CrdOutcome {
	name: string;
	created: boolean;
	/** of an existing CRD that could be read: the versions it serves and its labels */
	served?: string[];
	labels?: Record<string, string>;
}

export function loadVendoredCrds(path = ISTIO_CRDS_FILE): VendoredCrds {
	const text = readFileSync(path, 'utf8');
	const source = /^# from .* of the Go module (\S+)$/m.exec(text)?.[1] ?? path;
	const crds = (k8s.loadAllYaml(text) as unknown[]).filter(
		(d): d is k8s.V1CustomResourceDefinition => !!d && (d as { kind?: unknown }).kind === 'CustomResourceDefinition',
	);
	if (crds.length === 0) throw new Error(`${path} holds no CustomResourceDefinition`);
	return { source, crds };
}

/**
 * Creates each CRD the cluster lacks and logs, for each, whether it was created or which
 * existing one is used. Throws on any other API error (the caller retries).
 */
export async function ensureCrds(api: CrdApi, vendored: VendoredCrds, log: Logger): Promise<CrdOutcome[]> {
	const out: CrdOutcome[] = [];
	for (const crd of vendored.crds) {
		const name = crd.metadata?.name ?? '';
		if (await api.createIfAbsent(crd)) {
			log.info({ crd: name, source: vendored.source }, `created CRD ${name} from ${vendored.source}`);
			out.push({ name, created: true });
			continue;
		}
		const existing = await api.read(name);
		if (!existing) {
			log.info({ crd: name }, `CRD ${name} exists: left as it is`);
			out.push({ name, created: false });
			continue;
		}
		const served = (existing.spec.versions ?? []).filter((v) => v.served).map((v) => v.name);
		const labels = existing.metadata?.labels ?? {};
		const fields = { crd: name, served, labels, resourceVersion: existing.metadata?.resourceVersion };
		if (!served.includes('v1')) log.warn(fields, `CRD ${name} exists but does not serve v1, which the ztunnel reads: left as it is`);
		else log.info(fields, `CRD ${name} exists (serving ${served.join(', ')}): left as it is`);
		out.push({ name, created: false, served, labels });
	}
	return out;
}

function status(err: unknown): number | undefined {
	const code = (err as { code?: unknown }).code;
	return typeof code === 'number' ? code : undefined;
}

/** Least privilege (deploy/base/crds.yaml): create CRDs; get only these two. */
export class KubeCrds implements CrdApi {
	private readonly api: k8s.ApiextensionsV1Api;

	constructor(kc: k8s.KubeConfig) {
		this.api = kc.makeApiClient(k8s.ApiextensionsV1Api);
	}

	async createIfAbsent(crd: k8s.V1CustomResourceDefinition): Promise<boolean> {
		try {
			await this.api.createCustomResourceDefinition({ body: crd });
			return true;
		} catch (err) {
			if (status(err) === 409) return false;
			throw err;
		}
	}

	async read(name: string): Promise<k8s.V1CustomResourceDefinition | undefined> {
		try {
			return await this.api.readCustomResourceDefinition({ name });
		} catch (err) {
			if (status(err) === 404 || status(err) === 403) return undefined;
			throw err;
		}
	}
}
