/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Includes and small helpers used by every program. */
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

#endif /* WEIR_COMMON_H */
