/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Load-time configuration of the pod programs (pod_tc.bpf.c). */
#ifndef WEIR_POD_CONFIG_H
#define WEIR_POD_CONFIG_H

#include "common.h"

/*
 * Load-time configuration (libbpf rodata): set by the agent before load, folded by
 * the verifier into constants. Defaults are the production values.
 */
/* Allow traffic from this node to its pods whatever the policy (kubelet probes). */
const volatile __u8 weir_cfg_allow_host = 1;
/* Audit mode: a policy denial is reported (verdict AUDIT) but the packet passes. */
const volatile __u8 weir_cfg_audit = 0;
/* Emit a policy-verdict event for every new allowed connection. */
const volatile __u8 weir_cfg_verdict_events = 1;
/* Conntrack lifetimes, seconds. */
const volatile __u32 weir_cfg_ct_tcp_lifetime = 21600;
const volatile __u32 weir_cfg_ct_syn_lifetime = 60;
const volatile __u32 weir_cfg_ct_close_lifetime = 10;
const volatile __u32 weir_cfg_ct_other_lifetime = 60;
/*
 * Transparent capture of meshed pods' TCP into the ztunnel (capture.h). The marks
 * and the table are the agent's (src/kernel/capture.ts): its policy-routing rule
 * matches capture_mark under capture_mask; the ztunnel's sockets carry ztunnel_mark,
 * which that rule does not match.
 */
const volatile __u8 weir_cfg_capture = 1;
/* The ztunnel's outbound listener: port (host order) and address (network order, 0 = any). */
const volatile __u16 weir_cfg_proxy_port = 15001;
const volatile __u32 weir_cfg_proxy_addr = 0;
const volatile __u32 weir_cfg_capture_mark = 0x0e00;
const volatile __u32 weir_cfg_capture_mask = 0x0f00;
const volatile __u32 weir_cfg_ztunnel_mark = 0x0539;

#endif /* WEIR_POD_CONFIG_H */
