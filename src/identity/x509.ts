// The only importer of @peculiar/x509: X.509 certificates and PKCS#10 requests over
// Node's webcrypto. The library resolves its ASN.1 serializers through tsyringe, which
// needs the Reflect metadata polyfill loaded before it.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as Crypto);

export { x509 };

/** The one key type Weir makes: ECDSA P-256 with SHA-256 signatures (Istio's default). */
export const EC_P256: EcKeyGenParams & EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

export const subtle = webcrypto.subtle;

export async function generateKeyPair(): Promise<CryptoKeyPair> {
	return (await subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
}

/** PKCS#8 PEM of a private key (what node:tls takes). */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
	return x509.PemConverter.encode(await subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

export async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
	const der = x509.PemConverter.decode(pem);
	if (der.length !== 1) throw new Error(`expected one PEM block, found ${der.length}`);
	return subtle.importKey('pkcs8', der[0]!, EC_P256, false, ['sign']);
}

/** Splits a PEM bundle into its certificates (every block must be a CERTIFICATE). */
export function parseCertificates(pem: string): x509.X509Certificate[] {
	return x509.PemConverter.decode(pem).map((der) => new x509.X509Certificate(der));
}
