// Every refusal of the CA: an HTTP status, a stable code and a message that says what
// to check. The API answers { code, message } and logs the same with its context.

export type CaErrorCode =
	| 'WEIR_ERR_CA_BAD_REQUEST'
	| 'WEIR_ERR_CA_NO_TOKEN'
	| 'WEIR_ERR_CA_TOKEN_INVALID'
	| 'WEIR_ERR_CA_WRONG_SERVICE_ACCOUNT'
	| 'WEIR_ERR_CA_TOKEN_NOT_POD_BOUND'
	| 'WEIR_ERR_CA_BAD_IDENTITY'
	| 'WEIR_ERR_CA_BAD_CSR'
	| 'WEIR_ERR_CA_CSR_IDENTITY_MISMATCH'
	| 'WEIR_ERR_CA_NO_POD_ON_NODE'
	| 'WEIR_ERR_CA_API_UNAVAILABLE'
	| 'WEIR_ERR_CA_NOT_READY'
	| 'WEIR_ERR_CA_ROOT_INVALID';

export class CaError extends Error {
	/** who asked and for what (the caller's pod and node), added as the decision learns it */
	context: Record<string, string> = {};
	constructor(
		readonly code: CaErrorCode,
		readonly status: number,
		message: string,
		options?: { cause?: unknown },
	) {
		super(message, options);
		this.name = 'CaError';
	}
}
