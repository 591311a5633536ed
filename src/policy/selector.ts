// Kubernetes label selectors (metav1.LabelSelector semantics).
import { LabelSelector } from './model.js';

export class SelectorError extends Error {
	readonly code = 'WEIR_ERR_BAD_SELECTOR';
}

/**
 * True when `labels` satisfy the selector. An empty selector ({}) selects everything;
 * requirements are ANDed. An unknown operator throws: a policy we cannot read must not
 * be guessed at.
 */
export function selectorMatches(sel: LabelSelector, labels: Record<string, string>): boolean {
	for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
		if (labels[k] !== v) return false;
	}
	for (const req of sel.matchExpressions ?? []) {
		const has = Object.prototype.hasOwnProperty.call(labels, req.key);
		const values = req.values ?? [];
		switch (req.operator) {
			case 'In':
				if (!has || !values.includes(labels[req.key]!)) return false;
				break;
			case 'NotIn':
				if (has && values.includes(labels[req.key]!)) return false;
				break;
			case 'Exists':
				if (!has) return false;
				break;
			case 'DoesNotExist':
				if (has) return false;
				break;
			default:
				throw new SelectorError(`unknown label selector operator '${req.operator}' for key '${req.key}'`);
		}
	}
	return true;
}
