// Checks of a workload's certificate request (pure apart from webcrypto): it parses as
// PKCS#10, its self-signature verifies, its key is one the CA signs, and its only name
// is the requested SPIFFE ID as one URI SAN. Everything else in it (subject, other
// extensions) is ignored: the CA builds the certificate from the identity it checked.
import { x509 } from '../identity/x509.js';
import { CaError } from './errors.js';

export const MAX_CSR_PEM = 16_384;
const SAN_OID = '2.5.29.17';

export interface CheckedCsr {
	publicKey: x509.PublicKey;
}

function bad(message: string, cause?: unknown): CaError {
	return new CaError('WEIR_ERR_CA_BAD_CSR', 400, message, cause === undefined ? undefined : { cause });
}

async function checkKey(key: x509.PublicKey): Promise<void> {
	let alg: KeyAlgorithm;
	try {
		alg = (await key.export()).algorithm;
	} catch (err) {
		throw bad('the CSR public key is not one the CA signs (use ECDSA P-256 or P-384, or RSA of 2048-4096 bits)', err);
	}
	if (alg.name === 'ECDSA' && ['P-256', 'P-384'].includes((alg as EcKeyAlgorithm).namedCurve)) return;
	if (alg.name === 'RSASSA-PKCS1-v1_5') {
		const bits = (alg as RsaHashedKeyAlgorithm).modulusLength;
		if (bits >= 2048 && bits <= 4096) return;
	}
	throw bad(`the CSR public key (${alg.name}) is not one the CA signs (use ECDSA P-256 or P-384, or RSA of 2048-4096 bits)`);
}

/** Parses and checks `pem` as a request for exactly `identity` (a formatted SPIFFE ID). */
export async function checkCsr(pem: string, identity: string): Promise<CheckedCsr> {
	if (pem.length > MAX_CSR_PEM) throw bad(`the CSR is longer than ${MAX_CSR_PEM} characters`);
	const blocks = pem.match(/-----BEGIN ([A-Z0-9 ]+)-----/g) ?? [];
	if (blocks.length !== 1 || !/BEGIN (NEW )?CERTIFICATE REQUEST/.test(blocks[0]!)) {
		throw bad('the CSR must be one PEM block "CERTIFICATE REQUEST" (PKCS#10)');
	}
	let csr: x509.Pkcs10CertificateRequest;
	try {
		csr = new x509.Pkcs10CertificateRequest(pem);
	} catch (err) {
		throw bad(`the CSR does not parse as PKCS#10: ${(err as Error).message}`, err);
	}
	let ok = false;
	try {
		ok = await csr.verify();
	} catch (err) {
		throw bad(`the CSR signature cannot be checked: ${(err as Error).message}`, err);
	}
	if (!ok) throw bad('the CSR signature does not verify with its own public key');
	await checkKey(csr.publicKey);
	const sans = csr.extensions.filter((e) => e.type === SAN_OID);
	const mismatch = (why: string): CaError =>
		new CaError('WEIR_ERR_CA_CSR_IDENTITY_MISMATCH', 400, `the CSR's subject alternative names ${why}; it must name exactly ${identity} as its one URI SAN`);
	if (sans.length !== 1) throw mismatch(sans.length ? 'appear more than once' : 'are missing');
	let names: { type: string; value: string }[];
	try {
		names = new x509.SubjectAlternativeNameExtension(sans[0]!.rawData).names.items.map((n) => ({ type: n.type, value: n.value }));
	} catch (err) {
		throw bad(`the CSR's subject alternative name extension does not parse: ${(err as Error).message}`, err);
	}
	const shown = names.map((n) => `${n.type}:${n.value}`).join(', ') || 'nothing';
	if (names.length !== 1 || names[0]!.type !== 'url' || names[0]!.value !== identity) throw mismatch(`are ${shown}`);
	return { publicKey: csr.publicKey };
}
