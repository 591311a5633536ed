// Hand-written policy for labs, demos and benchmarks that run the datapath without
// the policy controller: writes a rule's trie entries the way the reconciler writes
// compiled ones (src/policy/reconcile.ts: one update per key).
import type { Datapath } from '../../src/kernel/datapath.js';
import { PolicyEntry, policyKeys, policyValue } from '../../src/kernel/codecs.js';

export function allowRule(dp: Datapath, entry: PolicyEntry): void {
	const value = policyValue(entry);
	for (const key of policyKeys(entry)) dp.putPolicyRaw(key, value);
}
