// The workload's side of a certificate: a key pair made here (the private key never
// leaves the process) and a PKCS#10 request whose only name is the SPIFFE ID as a URI
// SAN. The CA copies nothing else from it.
import { generateKeyPair, EC_P256, x509 } from './x509.js';
import { formatSpiffeId, type SpiffeId } from './spiffe.js';

export async function createCsr(keys: CryptoKeyPair, id: SpiffeId): Promise<string> {
	const csr = await x509.Pkcs10CertificateRequestGenerator.create({
		keys,
		signingAlgorithm: EC_P256,
		extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: formatSpiffeId(id) }], true)],
	});
	return csr.toString('pem');
}

export { generateKeyPair };
