// HBONE's fixed parts, shared by both ends: TLS 1.3 with mutual authentication,
// ALPN h2, HTTP/2 settings (Istio's windows and frame size), the SNI that names the
// destination identity, and reading the peer's SPIFFE ID off its certificate.
//
// Weir's ztunnel listens on the node's address (one listener per node, not one per
// pod as in Istio's in-pod model), so the destination ztunnel cannot tell from its
// local address which workload's certificate to present. The client names the
// destination identity in the SNI instead; the server presents that identity's
// certificate, and the client checks that the certificate it got carries exactly it.
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { SecureVersion } from 'node:tls';
import { parseSpiffeId, type SpiffeId } from '../../identity/spiffe.js';

export const HBONE_TLS: { minVersion: SecureVersion; maxVersion: SecureVersion; ALPNProtocols: string[] } = {
	minVersion: 'TLSv1.3',
	maxVersion: 'TLSv1.3',
	ALPNProtocols: ['h2'],
};

/** Istio's HBONE defaults (DESIGN.md): 100 streams per connection, 4 MiB stream and 16 MiB connection windows, 1 MiB frames. */
export const HBONE_H2 = {
	maxConcurrentStreams: 100,
	initialWindowSize: 4 * 1024 * 1024,
	connectionWindowSize: 16 * 1024 * 1024,
	maxFrameSize: 1024 * 1024,
} as const;

/**
 * An HBONE CONNECT carries five headers of a few dozen bytes (`:method`, `:scheme`?,
 * `:authority`, `forwarded`, perhaps trace context); a header block beyond 16 KiB is
 * not HBONE. Node's HTTP/2 layer resets a stream whose headers exceed it
 * (ENHANCE_YOUR_CALM) before the proxy sees the stream.
 */
export const HBONE_MAX_HEADER_BYTES = 16 * 1024;

export const HBONE_SETTINGS = {
	initialWindowSize: HBONE_H2.initialWindowSize,
	maxFrameSize: HBONE_H2.maxFrameSize,
	maxConcurrentStreams: HBONE_H2.maxConcurrentStreams,
	maxHeaderListSize: HBONE_MAX_HEADER_BYTES,
};

/**
 * The HBONE server's other HTTP/2 limits: header pairs (pseudo-headers included) and
 * the memory a session may hold before new streams are refused (Node's default, MiB).
 */
export const HBONE_SERVER_H2 = { maxHeaderListPairs: 32, maxSessionMemory: 10 } as const;

/** The request header naming the client pod's address (RFC 7239 `for=`). */
export const FORWARDED = 'forwarded';

/** Response headers of a refused CONNECT: why, in words, and the AuthorizationPolicy behind a 403. */
export const REASON_HEADER = 'x-weir-reason';
export const POLICY_HEADER = 'x-weir-policy';

const SNI_SUFFIX = '.weir-identity.invalid';

export class HboneError extends Error {
	/** (WEIR_ERR_HBONE_REFUSED) the destination ztunnel's answer: its status, and the AuthorizationPolicy it named */
	status?: number;
	policy?: string;

	constructor(
		readonly code: string,
		message: string,
		options?: { cause?: unknown; status?: number; policy?: string },
	) {
		super(message, options);
		this.name = 'HboneError';
		if (options?.status !== undefined) this.status = options.status;
		if (options?.policy) this.policy = options.policy;
	}
}

/**
 * The SNI naming a destination identity: `<sa>.<ns>.weir-identity.invalid`. A
 * namespace is one DNS label, so the label before the suffix is always the namespace
 * and the rest the ServiceAccount (which may hold dots). `.invalid` (RFC 2606) cannot
 * collide with a real name.
 */
export function identitySni(id: SpiffeId): string {
	return `${id.serviceAccount}.${id.namespace}${SNI_SUFFIX}`;
}

/** The identity an SNI names, in `trustDomain`; undefined for any other name. */
export function identityFromSni(sni: string | undefined | null | false, trustDomain: string): SpiffeId | undefined {
	if (!sni || !sni.endsWith(SNI_SUFFIX)) return undefined;
	const head = sni.slice(0, -SNI_SUFFIX.length);
	const dot = head.lastIndexOf('.');
	if (dot <= 0) return undefined;
	try {
		return parseSpiffeId(`spiffe://${trustDomain}/ns/${head.slice(dot + 1)}/sa/${head.slice(0, dot)}`, trustDomain);
	} catch {
		return undefined;
	}
}

/** The URI SANs of a certificate, from Node's `subjectaltname` string. */
export function uriSans(subjectAltName: string | undefined): string[] {
	if (!subjectAltName) return [];
	return subjectAltName
		.split(', ')
		.filter((s) => s.startsWith('URI:'))
		.map((s) => s.slice(4));
}

/**
 * The SPIFFE ID of a verified peer certificate: exactly one URI SAN, a workload ID of
 * this trust domain. Throws HboneError otherwise.
 */
export function peerIdentity(cert: Pick<PeerCertificate, 'subjectaltname'> | undefined, trustDomain: string): string {
	const uris = uriSans(cert?.subjectaltname);
	if (uris.length !== 1) {
		throw new HboneError(
			'WEIR_ERR_HBONE_PEER_IDENTITY',
			`the peer certificate carries ${uris.length} URI SANs (${uris.join(', ') || 'none'}); a workload certificate has exactly one SPIFFE ID`,
		);
	}
	try {
		parseSpiffeId(uris[0]!, trustDomain);
	} catch (cause) {
		throw new HboneError('WEIR_ERR_HBONE_PEER_IDENTITY', `the peer's SPIFFE ID is not a workload of trust domain ${trustDomain}: ${(cause as Error).message}`, {
			cause,
		});
	}
	return uris[0]!;
}

/** The verified peer identity of a TLS socket (throws when unauthenticated). */
export function tlsPeerIdentity(socket: TLSSocket, trustDomain: string): string {
	if (!socket.authorized) {
		throw new HboneError('WEIR_ERR_HBONE_UNAUTHENTICATED', `the peer's certificate was not verified: ${String(socket.authorizationError ?? 'no certificate')}`);
	}
	return peerIdentity(socket.getPeerCertificate(), trustDomain);
}

/** `a.b.c.d:port` (the HBONE `:authority`), or undefined. */
export function parseAuthority(authority: string | undefined): { address: string; port: number } | undefined {
	const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3}):(\d{1,5})$/.exec(authority ?? '');
	if (!m) return undefined;
	const octets = m.slice(1, 5).map(Number);
	const port = Number(m[5]);
	if (octets.some((o) => o > 255) || port < 1 || port > 65535) return undefined;
	return { address: octets.join('.'), port };
}

/** The `for=` address of a Forwarded header (the client pod), or undefined. */
export function forwardedFor(header: string | string[] | undefined): string | undefined {
	const v = Array.isArray(header) ? header[0] : header;
	const m = /(?:^|[;,\s])for="?(\d{1,3}(?:\.\d{1,3}){3})"?(?:$|[;,\s])/i.exec(v ?? '');
	return m?.[1] && parseAuthority(`${m[1]}:1`) ? m[1] : undefined;
}
