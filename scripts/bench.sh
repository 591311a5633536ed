#!/usr/bin/env bash
# Benchmarks (separate from tests): each prints figures and ratios against a baseline
# measured in the same run, never asserts. Needs root.
# Usage: scripts/bench.sh [datapath|policy|flows|cni|upgrade|services|relay ...] [--quick]   (default: all)
#   datapath  ns/packet under BPF_PROG_TEST_RUN vs an empty program; iperf3 with/without
#   policy    compile of 1000 pods x 500 policies; API change -> map p50/p99; agent RSS
#   flows     policy write -> drop refused and -> its flow in the flow API, p50/p99
#   cni       ADD/DEL latency p50/p99 next to the reference ptp + host-local
#   upgrade   stream stalls during an in-place agent upgrade vs before it
#   services  connect() p50/p99 to a ClusterIP (1000 Services x 10 backends): socket LB vs
#             direct vs kube-proxy-style iptables DNAT (nft and legacy); then the agent's time
#             to apply 1000 EndpointSlice changes (real API server -> pinned map; --quick: 100)
#             vs the API server's own time for the same writes with no agent
#   relay     flows/s the relay merges and serves with the web UI open; its RSS; the page's frame time at 1 000 flows/s; the heap of its bounds when full
set -euo pipefail
. "$(dirname "$0")/as-root.sh" "$0" "$@"
cd "$(dirname "$0")/.."
bash scripts/setup.sh
which=()
flags=()
for a in "$@"; do
	case "$a" in
	datapath | policy | flows | cni | upgrade | services | relay) which+=("$a") ;;
	*) flags+=("$a") ;;
	esac
done
[ "${#which[@]}" -gt 0 ] || which=(datapath policy flows cni upgrade services relay)
for b in "${which[@]}"; do
	case "$b" in
	datapath) node --enable-source-maps dist/bench/datapath.bench.js "${flags[@]}" ;;
	policy) node --enable-source-maps dist/bench/policy.bench.js ;;
	flows) node --enable-source-maps dist/bench/flows.bench.js ;;
	cni) node --enable-source-maps dist/bench/cni.bench.js ;;
	upgrade) node --enable-source-maps dist/bench/upgrade.bench.js ;;
	services)
		node --enable-source-maps dist/bench/services.bench.js "${flags[@]}"
		echo
		node --enable-source-maps dist/bench/services-apply.bench.js "${flags[@]}"
		;;
	relay) node --enable-source-maps dist/bench/relay.bench.js ;;
	esac
	echo
done
