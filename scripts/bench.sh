#!/usr/bin/env bash
# Benchmarks (separate from tests): prints figures and ratios against baselines
# measured in the same run. Usage: scripts/bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node --enable-source-maps dist/bench/datapath.bench.js "$@"
