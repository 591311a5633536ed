// CNI spec error codes (CNI 1.1.0, "Error" section) and the error every command
// answers with: {cniVersion, code, msg, details} on stdout and a non-zero exit.

export const CniCode = {
	IncompatibleVersion: 1,
	UnsupportedField: 2,
	UnknownContainer: 3,
	InvalidEnv: 4,
	Io: 5,
	Decode: 6,
	InvalidConfig: 7,
	TryAgainLater: 11,
	/** STATUS: the plugin cannot service ADD requests */
	NotAvailable: 50,
	/** STATUS: the plugin cannot service ADD requests because of limited connectivity */
	LimitedConnectivity: 51,
	Other: 999,
} as const;

export class CniError extends Error {
	constructor(
		readonly code: number,
		msg: string,
		readonly details = '',
		options?: { cause?: unknown },
	) {
		super(msg, options);
		this.name = 'CniError';
	}

	toJSON(cniVersion: string): { cniVersion: string; code: number; msg: string; details: string } {
		return { cniVersion, code: this.code, msg: this.message, details: this.details };
	}
}

/** Any thrown value as a CniError (code 999 unless it already is one). */
export function asCniError(err: unknown, what: string): CniError {
	if (err instanceof CniError) return err;
	const e = err as { message?: string; code?: unknown };
	const detail = e?.message ?? String(err);
	return new CniError(CniCode.Other, what, detail, { cause: err });
}
