// How a ztunnel asks the CA for a certificate: the CaClient interface (what the
// certificate manager depends on) and its HTTPS implementation against the
// controller's endpoint, authenticated by the pod's projected ServiceAccount token.
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';

export interface SignedCertificate {
	/** leaf first */
	certChain: string[];
	trustBundle: string[];
	notBefore: Date;
	notAfter: Date;
}

export interface CaClient {
	sign(csrPem: string, identity: string): Promise<SignedCertificate>;
}

export class CaClientError extends Error {
	constructor(
		readonly code: string,
		message: string,
		readonly status?: number,
		options?: { cause?: unknown },
	) {
		super(message, options);
		this.name = 'CaClientError';
	}
}

export interface HttpsCaClientOptions {
	/** e.g. https://weir-ca.weir-system.svc:15012 */
	url: string;
	/** PEM roots that the CA's serving certificate chains to (the trust bundle) */
	ca: string;
	/** the projected token's path; read at every request (the kubelet rotates it) */
	tokenPath: string;
	/** TLS server name when `url` is an address */
	servername?: string;
	timeoutMs?: number;
}

export class HttpsCaClient implements CaClient {
	constructor(private readonly o: HttpsCaClientOptions) {}

	async sign(csrPem: string, identity: string): Promise<SignedCertificate> {
		const token = (await readFile(this.o.tokenPath, 'utf8')).trim();
		const body = JSON.stringify({ csr: csrPem, identity });
		const u = new URL('/v1/certificates', this.o.url);
		const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
			const req = request(
				u,
				{
					method: 'POST',
					ca: this.o.ca,
					...(this.o.servername ? { servername: this.o.servername } : {}),
					minVersion: 'TLSv1.3',
					headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'content-length': Buffer.byteLength(body) },
					timeout: this.o.timeoutMs ?? 10_000,
				},
				(res) => {
					const chunks: Buffer[] = [];
					res.on('data', (c: Buffer) => chunks.push(c));
					res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
					res.on('error', reject);
				},
			);
			req.on('timeout', () => req.destroy(new Error(`no answer from the CA at ${u.origin} in ${this.o.timeoutMs ?? 10_000} ms`)));
			req.on('error', reject);
			req.end(body);
		}).catch((err: Error) => {
			throw new CaClientError('WEIR_ERR_CA_UNREACHABLE', `cannot reach the CA at ${u.origin}: ${err.message} (is weir-controller running?)`, undefined, {
				cause: err,
			});
		});
		let json: { code?: string; message?: string; certChain?: string[]; trustBundle?: string[]; notBefore?: string; notAfter?: string };
		try {
			json = JSON.parse(text) as typeof json;
		} catch {
			throw new CaClientError('WEIR_ERR_CA_BAD_ANSWER', `the CA answered ${status} with no JSON: ${text.slice(0, 200)}`, status);
		}
		if (status !== 200) throw new CaClientError(json.code ?? 'WEIR_ERR_CA_REFUSED', `the CA refused ${identity}: ${json.message ?? status}`, status);
		if (!json.certChain?.length || !json.trustBundle?.length || !json.notBefore || !json.notAfter) {
			throw new CaClientError('WEIR_ERR_CA_BAD_ANSWER', 'the CA answered 200 without a certificate chain', status);
		}
		return { certChain: json.certChain, trustBundle: json.trustBundle, notBefore: new Date(json.notBefore), notAfter: new Date(json.notAfter) };
	}
}
