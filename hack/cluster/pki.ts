// The cluster's PKI (a CA, serving and client certificates, the service-account key
// pair) made with the openssl CLI, and kubeconfigs with the credentials embedded.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './exec.js';

const KEY_ARGS = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export interface CertSpec {
	/** Basename: writes <name>.crt and <name>.key. */
	name: string;
	cn: string;
	org?: string;
	dns?: readonly string[];
	ips?: readonly string[];
	server?: boolean;
}

export interface Pki {
	dir: string;
	caCrt: string;
	caKey: string;
	crt(name: string): string;
	key(name: string): string;
}

export async function makeCa(dir: string): Promise<Pki> {
	mkdirSync(dir, { recursive: true, mode: 0o700 });
	const caCrt = join(dir, 'ca.crt');
	const caKey = join(dir, 'ca.key');
	await run('openssl', [
		'req',
		'-x509',
		...KEY_ARGS,
		'-keyout',
		caKey,
		'-out',
		caCrt,
		'-days',
		'3650',
		'-subj',
		'/CN=weir-local-cluster-ca',
		'-addext',
		'basicConstraints=critical,CA:TRUE',
		'-addext',
		'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
	]);
	return {
		dir,
		caCrt,
		caKey,
		crt: (n) => join(dir, `${n}.crt`),
		key: (n) => join(dir, `${n}.key`),
	};
}

export async function makeCert(pki: Pki, spec: CertSpec): Promise<void> {
	const csr = join(pki.dir, `${spec.name}.csr`);
	const ext = join(pki.dir, `${spec.name}.ext`);
	const subj = `/CN=${spec.cn}${spec.org ? `/O=${spec.org}` : ''}`;
	await run('openssl', ['req', '-new', ...KEY_ARGS, '-keyout', pki.key(spec.name), '-out', csr, '-subj', subj]);
	const sans = [...(spec.dns ?? []).map((d) => `DNS:${d}`), ...(spec.ips ?? []).map((i) => `IP:${i}`)];
	const lines = [
		'basicConstraints=critical,CA:FALSE',
		'keyUsage=critical,digitalSignature,keyEncipherment',
		`extendedKeyUsage=${spec.server ? 'serverAuth,clientAuth' : 'clientAuth'}`,
	];
	if (sans.length > 0) lines.push(`subjectAltName=${sans.join(',')}`);
	writeFileSync(ext, lines.join('\n') + '\n');
	await run('openssl', [
		'x509',
		'-req',
		'-in',
		csr,
		'-CA',
		pki.caCrt,
		'-CAkey',
		pki.caKey,
		'-CAcreateserial',
		'-out',
		pki.crt(spec.name),
		'-days',
		'365',
		'-extfile',
		ext,
	]);
}

/** Service-account token signing key pair: sa.key (private), sa.pub (public). */
export async function makeServiceAccountKeys(pki: Pki): Promise<{ key: string; pub: string }> {
	const key = join(pki.dir, 'sa.key');
	const pub = join(pki.dir, 'sa.pub');
	await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', key]);
	await run('openssl', ['pkey', '-in', key, '-pubout', '-out', pub]);
	return { key, pub };
}

/** A kubeconfig for one client certificate, credentials inline (portable, client-node friendly). */
export function writeKubeconfig(file: string, server: string, pki: Pki, certName: string, user: string): void {
	const b64 = (f: string): string => readFileSync(f).toString('base64');
	const doc = {
		apiVersion: 'v1',
		kind: 'Config',
		clusters: [{ name: 'weir', cluster: { server, 'certificate-authority-data': b64(pki.caCrt) } }],
		users: [
			{
				name: user,
				user: {
					'client-certificate-data': b64(pki.crt(certName)),
					'client-key-data': b64(pki.key(certName)),
				},
			},
		],
		contexts: [{ name: 'weir', context: { cluster: 'weir', user } }],
		'current-context': 'weir',
	};
	// JSON is valid YAML: kubectl, the Go components and client-node all read it.
	writeFileSync(file, JSON.stringify(doc, null, 2) + '\n', { mode: 0o600 });
}
