/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Includes, load-time configuration and small helpers used by every program. */
#ifndef WEIR_COMMON_H
#define WEIR_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../shared/weir_datapath.h"
#include "../shared/weir_drop_reasons.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define NSEC_PER_SEC 1000000000ULL

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

#endif /* WEIR_COMMON_H */
