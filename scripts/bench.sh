#!/usr/bin/env bash
# Benchmarks (separate from tests): each prints figures and ratios against a baseline
# measured in the same run, never asserts. Needs root.
# Usage: scripts/bench.sh [datapath|policy|cni ...] [--quick]   (default: all three)
#   datapath  ns/packet under BPF_PROG_TEST_RUN vs an empty program; iperf3 with/without
#   policy    compile of 1000 pods x 500 policies; API change -> map p50/p99; agent RSS
#   cni       ADD/DEL latency p50/p99 next to the reference ptp + host-local
set -euo pipefail
. "$(dirname "$0")/as-root.sh" "$0" "$@"
cd "$(dirname "$0")/.."
bash scripts/setup.sh
which=()
flags=()
for a in "$@"; do
	case "$a" in
	datapath | policy | cni) which+=("$a") ;;
	*) flags+=("$a") ;;
	esac
done
[ "${#which[@]}" -gt 0 ] || which=(datapath policy cni)
for b in "${which[@]}"; do
	case "$b" in
	datapath) node --enable-source-maps dist/bench/datapath.bench.js "${flags[@]}" ;;
	policy) node --enable-source-maps dist/bench/policy.bench.js ;;
	cni) node --enable-source-maps dist/bench/cni.bench.js ;;
	esac
	echo
done
