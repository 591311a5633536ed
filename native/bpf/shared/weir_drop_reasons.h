/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Registry of Weir's datapath drop reasons.
 *
 * Codes are stable negative numbers. A retired code stays here marked unused and is
 * never renumbered: flows stored by older agents must keep their meaning. The
 * TypeScript side mirrors this table (src/bpf/layout.ts) and a test compares them.
 *
 * The metrics map is indexed by -code (0 = forwarded), so every code lies in
 * [-WEIR_REASON_MAX + 1, -1].
 */
#ifndef WEIR_DROP_REASONS_H
#define WEIR_DROP_REASONS_H

#define WEIR_OK			     0	  /* forwarded */
#define WEIR_DROP_INVALID_PACKET     -130 /* truncated or malformed headers */
#define WEIR_DROP_POLICY_DENIED	     -131 /* no policy entry allows this new connection */
#define WEIR_DROP_NO_ENDPOINT	     -132 /* the pod address is not a registered endpoint */
#define WEIR_DROP_INVALID_SOURCE     -133 /* source address does not belong to the sending pod */
#define WEIR_DROP_UNSUPPORTED_L3     -134 /* not IPv4 or ARP (IPv6 is not enforced yet) */
#define WEIR_DROP_CT_CREATE_FAILED   -135 /* conntrack table could not take a new entry */
#define WEIR_DROP_FRAG_NOT_SUPPORTED -136 /* IPv4 fragment: ports unknown, cannot be policed */
#define WEIR_DROP_UNSUPPORTED_L4     -137 /* reserved, unused: every IP protocol is policed by L3 rules */
#define WEIR_DROP_WRONG_INTERFACE    -138 /* destination pod is not behind the interface it reached */
#define WEIR_DROP_NO_SERVICE_BACKEND -139 /* socket LB: the Service has no backend; its connect is refused */
#define WEIR_DROP_PROXY_UNAVAILABLE  -140 /* meshed pod's TCP: no ztunnel socket to take it (fail closed) */
#define WEIR_DROP_MTLS_REQUIRED	     -141 /* PeerAuthentication STRICT: a new TCP connection not from the ztunnel */

/*
 * The metrics array covers -code in [0, 159]: room for codes up to -159 without
 * resizing the pinned map (a resize is a new map name: weir_metrics_v2 was made for
 * this headroom when -140 arrived).
 */
#define WEIR_REASON_MAX 160

#endif /* WEIR_DROP_REASONS_H */
