// The CA's HTTPS endpoint (an encapsulated fastify plugin): POST /v1/certificates with
// the ztunnel's projected ServiceAccount token as a bearer token and a JSON body
// { csr, identity }. Every refusal answers { code, message } with its status and is
// logged with the caller, the identity and the node; nothing else happens.
import type { FastifyError, FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { MAX_CSR_PEM } from './csr.js';
import { CaError } from './errors.js';
import type { SignRequest, WorkloadCa } from './ca.js';

export interface CaApiOptions {
	ca: WorkloadCa;
	log: Logger;
}

const SIGN_SCHEMA = {
	type: 'object',
	required: ['csr', 'identity'],
	additionalProperties: false,
	properties: {
		csr: { type: 'string', minLength: 1, maxLength: MAX_CSR_PEM },
		identity: { type: 'string', minLength: 1, maxLength: 2048 },
	},
} as const;

function bearer(header: string | undefined): string | undefined {
	const m = /^Bearer ([^\s]+)$/.exec(header ?? '');
	return m?.[1];
}

export const caApi: FastifyPluginAsync<CaApiOptions> = async (app: FastifyInstance, { ca, log }) => {
	app.setErrorHandler((err: FastifyError, req, reply) => {
		const ctx = { method: req.method, url: req.url, remote: req.ip };
		if (err instanceof CaError) {
			const level = err.status >= 500 ? 'error' : 'warn';
			log[level](
				{
					...ctx,
					...((req as { caContext?: object }).caContext ?? {}),
					...err.context,
					code: err.code,
					status: err.status,
					err: err.cause ? String(err.cause) : undefined,
				},
				err.message,
			);
			return reply.code(err.status).send({ code: err.code, message: err.message });
		}
		if (err.validation || err.statusCode === 400 || err.statusCode === 415 || err.statusCode === 413) {
			const message = `bad request: ${err.message} (send JSON { "csr": "<PEM PKCS#10>", "identity": "spiffe://…" })`;
			log.warn({ ...ctx, code: 'WEIR_ERR_CA_BAD_REQUEST', status: err.statusCode ?? 400 }, message);
			return reply.code(err.statusCode && err.statusCode !== 500 ? err.statusCode : 400).send({ code: 'WEIR_ERR_CA_BAD_REQUEST', message });
		}
		log.error({ ...ctx, err: err.message }, 'the CA failed');
		return reply.code(500).send({ code: 'WEIR_ERR_CA_INTERNAL', message: 'the CA failed; see the controller log' });
	});

	app.get('/v1/trust-bundle', async () => ({ trustBundle: ca.trustBundle() }));

	app.post<{ Body: SignRequest }>('/v1/certificates', { schema: { body: SIGN_SCHEMA }, bodyLimit: 2 * MAX_CSR_PEM }, async (req) => {
		(req as { caContext?: object }).caContext = { identity: req.body.identity };
		const out = await ca.sign(bearer(req.headers.authorization), req.body);
		const { caller, ...res } = out;
		log.info(
			{ identity: res.identity, node: caller.nodeName, ztunnel: `${caller.namespace}/${caller.podName}`, notAfter: res.notAfter },
			'signed a workload certificate',
		);
		return res;
	});
};
