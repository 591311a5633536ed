// The upstream NetworkPolicy e2e suite (k8s.io/kubernetes test/e2e/network/netpol of the
// pinned version): what a run selects, what it leaves out and why, and the quick subset.
import { literal } from './report.js';

/** Every spec of test/e2e/network/netpol: "Netpol", "Netpol [LinuxOnly]", "Netpol API", and the SCTP block. */
export const NETPOL_FOCUS = '\\[sig-network\\] Netpol';

export interface SkipRule {
	pattern: string;
	reason: string;
}

/**
 * Left out: only what the NetworkPolicy API lets a CNI leave out. Everything else of
 * the suite runs, failing specs included (they are the work list, not something to hide).
 */
export const NETPOL_SKIPS: readonly SkipRule[] = [
	{
		pattern: '\\[Feature:SCTPConnectivity\\]',
		reason:
			'SCTP between pods (3 of the 50 netpol specs of v1.35.4: "Netpol [Feature:SCTPConnectivity] [LinuxOnly] ... using SCTP"). ' +
			'SCTP support is optional for a CNI; Weir enforces TCP, UDP and ICMP. The two specs that check an SCTP ' +
			"*policy* on a plugin without SCTP (\"should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP'\", " +
			'"should properly isolate pods that are selected by a policy allowing SCTP") still run.',
	},
	{
		pattern: '\\[Feature:IPv6DualStack\\]',
		reason:
			'IPv6 and dual-stack clusters: the local cluster and Weir are IPv4-only. No netpol spec of v1.35.4 ' +
			'carries this label (the ipBlock specs pick the pod IP family at run time); it guards a wider --focus.',
	},
	{
		pattern: '\\[Feature:Networking-IPv6\\]',
		reason: 'IPv6 connectivity: as above, IPv4-only; no netpol spec of v1.35.4 carries it.',
	},
];

export const NETPOL_SKIP = NETPOL_SKIPS.map((s) => s.pattern).join('|');

/** The container text of the TCP specs (the UDP and SCTP blocks say "... using UDP" / "using SCTP"). */
const TCP = '[sig-network] Netpol NetworkPolicy between server and client';

export interface QuickSpec {
	/** full spec text up to (not including) its [Feature:NetworkPolicy] label */
	name: string;
	covers: string;
}

/**
 * A representative subset for CI: deny-all (ingress, both directions), an ingress
 * podSelector, namespace selectors, ports (numbered and named), egress. Each spec
 * builds three namespaces of three agnhost pods and probes the 81 pairs by Service IP.
 */
export const NETPOL_QUICK: readonly QuickSpec[] = [
	{ name: `${TCP} should support a 'default-deny-ingress' policy`, covers: 'deny-all ingress' },
	{ name: `${TCP} should support a 'default-deny-all' policy`, covers: 'deny-all ingress and egress' },
	{ name: `${TCP} should enforce policy to allow traffic from pods within server namespace based on PodSelector`, covers: 'ingress, podSelector' },
	{ name: `${TCP} should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector`, covers: 'ingress, namespaceSelector' },
	{ name: `${TCP} should enforce policy based on PodSelector and NamespaceSelector`, covers: 'ingress, podSelector and namespaceSelector in one peer' },
	{ name: `${TCP} should enforce policy based on Ports`, covers: 'ingress, numbered port' },
	{ name: `${TCP} should allow ingress access on one named port`, covers: 'ingress, named port' },
	{ name: `${TCP} should deny egress from pods based on PodSelector`, covers: 'egress, deny-all for selected pods' },
	{
		name: `${TCP} should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector`,
		covers: 'egress allowing pods of another namespace, probed at their Service (socket LB)',
	},
	{ name: `${TCP} should allow egress access to server in CIDR block`, covers: "egress ipBlock of a pod's address, probed at its Service" },
];

/**
 * --ginkgo.focus for the quick subset: each spec's full name, literally, up to the " ["
 * of its label (Ginkgo matches the focus somewhere in the text; `^` matches nothing).
 */
export const NETPOL_QUICK_FOCUS = NETPOL_QUICK.map((q) => `${literal(q.name)} \\[`).join('|');
