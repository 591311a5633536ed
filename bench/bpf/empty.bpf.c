// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The baseline for datapath benchmarks: a tc program that passes everything. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int weir_bench_empty(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
