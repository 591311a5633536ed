// The CA's own HTTPS server (TLS 1.3 only): a serving certificate signed by the root
// for the CA Service's DNS names, made fresh at each start, and the API plugin.
import fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { caApi } from './api.js';
import type { WorkloadCa } from './ca.js';
import { issueServingCert } from './issue.js';

export const SERVING_TTL_MS = 365 * 24 * 3600_000;

/** The DNS names of the CA's Service in `namespace` (deploy/base/controller.yaml: Service weir-ca). */
export function caDnsNames(namespace: string, service = 'weir-ca'): string[] {
	return [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, `${service}.${namespace}`, service];
}

export async function buildCaServer(ca: WorkloadCa, log: Logger, dnsNames: string[], now = Date.now()): Promise<FastifyInstance> {
	const serving = await issueServingCert(ca.rootCert(), dnsNames, SERVING_TTL_MS, now);
	// Unknown fields are refused, not silently dropped (fastify's default strips them).
	const app = fastify({
		logger: false,
		ajv: { customOptions: { removeAdditional: false } },
		https: { cert: serving.certPem, key: serving.keyPem, minVersion: 'TLSv1.3' },
	});
	await app.register(caApi, { ca, log });
	return app as unknown as FastifyInstance;
}
