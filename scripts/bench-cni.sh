#!/usr/bin/env bash
# CNI benchmark (separate from tests): ADD/DEL latency p50/p99 of weir-cni next to the
# reference ptp + host-local, measured in the same run. Needs root.
# Usage: scripts/bench-cni.sh [--pods 100] [--parallel 30]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node --enable-source-maps dist/bench/cni.bench.js "$@"
