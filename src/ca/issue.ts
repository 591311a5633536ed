// Certificates the CA makes (pure apart from webcrypto and randomness): the root, the
// workload certificates and the CA endpoint's own serving certificate. All ECDSA P-256
// with SHA-256.
import { randomBytes } from 'node:crypto';
import { EC_P256, generateKeyPair, importPrivateKeyPem, parseCertificates, privateKeyPem, subtle, x509 } from '../identity/x509.js';
import { CaError } from './errors.js';

export interface CaRoot {
	cert: x509.X509Certificate;
	certPem: string;
	key: CryptoKey;
	keyPem: string;
}

export const ROOT_TTL_MS = 10 * 365 * 24 * 3600_000;
/** Signed certificates start this much before now, for nodes whose clocks are a little behind. */
export const BACKDATE_MS = 60_000;

function serial(): string {
	const b = randomBytes(16);
	b[0] = b[0]! & 0x7f; // positive
	if (b[0] === 0) b[0] = 1; // no leading zero byte to strip
	return b.toString('hex');
}

export async function createRoot(trustDomain: string, now: number): Promise<CaRoot> {
	const keys = await generateKeyPair();
	const cert = await x509.X509CertificateGenerator.createSelfSigned({
		serialNumber: serial(),
		name: `O=${trustDomain}, CN=Weir workload root CA`,
		notBefore: new Date(now - BACKDATE_MS),
		notAfter: new Date(now + ROOT_TTL_MS),
		keys,
		signingAlgorithm: EC_P256,
		extensions: [
			new x509.BasicConstraintsExtension(true, 0, true),
			new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
			await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
		],
	});
	return { cert, certPem: cert.toString('pem'), key: keys.privateKey, keyPem: await privateKeyPem(keys.privateKey) };
}

/** A root read back from its Secret: one CA certificate, its key, the two matching, valid at `now`. */
export async function loadRoot(certPem: string, keyPem: string, now: number): Promise<CaRoot> {
	const invalid = (why: string, cause?: unknown): CaError =>
		new CaError(
			'WEIR_ERR_CA_ROOT_INVALID',
			500,
			`the CA root Secret ${why}; fix or delete it (deleting it makes a new root: every workload certificate must then be re-issued)`,
			{
				cause,
			},
		);
	let certs: x509.X509Certificate[];
	let key: CryptoKey;
	try {
		certs = parseCertificates(certPem);
		key = await importPrivateKeyPem(keyPem);
	} catch (err) {
		throw invalid(`does not hold a PEM certificate and a PKCS#8 ECDSA P-256 key (${(err as Error).message})`, err);
	}
	if (certs.length !== 1) throw invalid(`holds ${certs.length} certificates, not one`);
	const cert = certs[0]!;
	const bc = cert.getExtension(x509.BasicConstraintsExtension);
	if (!bc?.ca) throw invalid('holds a certificate that is not a CA');
	if (cert.notAfter.getTime() <= now || cert.notBefore.getTime() > now)
		throw invalid(`holds a certificate valid only from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}`);
	// The key must be the certificate's: sign something and verify with the certificate.
	const probe = randomBytes(32);
	const sig = await subtle.sign(EC_P256, key, probe);
	const pub = await cert.publicKey.export(EC_P256, ['verify']);
	if (!(await subtle.verify(EC_P256, pub, sig, probe))) throw invalid("holds a key that is not the certificate's");
	return { cert, certPem: cert.toString('pem'), key, keyPem };
}

export interface IssuedCert {
	cert: x509.X509Certificate;
	pem: string;
}

/** A workload certificate: no subject, the SPIFFE ID as its one (critical) URI SAN, mTLS client and server. */
export async function issueWorkloadCert(root: CaRoot, publicKey: x509.PublicKey, spiffeId: string, ttlMs: number, now: number): Promise<IssuedCert> {
	const notAfter = Math.min(now + ttlMs, root.cert.notAfter.getTime());
	const cert = await x509.X509CertificateGenerator.create({
		serialNumber: serial(),
		subject: '',
		issuer: root.cert.subject,
		notBefore: new Date(now - Math.min(BACKDATE_MS, ttlMs / 10)),
		notAfter: new Date(notAfter),
		signingAlgorithm: EC_P256,
		publicKey,
		signingKey: root.key,
		extensions: [
			new x509.BasicConstraintsExtension(false, undefined, true),
			new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
			new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
			new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true),
			await x509.AuthorityKeyIdentifierExtension.create(root.cert),
		],
	});
	return { cert, pem: cert.toString('pem') };
}

/** The CA endpoint's own TLS certificate (DNS names of its Service), with a fresh key. */
export async function issueServingCert(root: CaRoot, dnsNames: string[], ttlMs: number, now: number): Promise<{ certPem: string; keyPem: string }> {
	const keys = await generateKeyPair();
	const cert = await x509.X509CertificateGenerator.create({
		serialNumber: serial(),
		subject: `CN=${dnsNames[0] ?? 'weir-ca'}`,
		issuer: root.cert.subject,
		notBefore: new Date(now - BACKDATE_MS),
		notAfter: new Date(Math.min(now + ttlMs, root.cert.notAfter.getTime())),
		signingAlgorithm: EC_P256,
		publicKey: keys.publicKey,
		signingKey: root.key,
		extensions: [
			new x509.BasicConstraintsExtension(false, undefined, true),
			new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
			new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
			new x509.SubjectAlternativeNameExtension(dnsNames.map((value) => ({ type: 'dns' as const, value }))),
			await x509.AuthorityKeyIdentifierExtension.create(root.cert),
		],
	});
	return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}
