#!/usr/bin/env bash
# Weir's main job, for now: the datapath demonstration (segregation scenario on lab pod
# namespaces, the drop printed from the ring buffer). Pass --keep to leave it running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node --enable-source-maps dist/hack/demo/datapath-demo.js "$@"
