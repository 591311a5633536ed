#!/usr/bin/env bash
# Weir's main job: a local Kubernetes cluster, Weir installed from deploy/ with kubectl
# exactly as on kind, the segregation scenario, its NetworkPolicy and the DROPPED flow.
# Leaves the cluster running and prints the next commands (docs/quickstart.md).
#   bash scripts/demo.sh            run it (builds what is missing first)
#   bash scripts/demo.sh --down     stop the demo cluster
#   bash scripts/demo.sh --lab      the datapath-only demo on lab namespaces (no Kubernetes);
#                                   --lab --keep streams its flows until Ctrl-C
set -euo pipefail
. "$(dirname "$0")/as-root.sh" "$0" "$@"
cd "$(dirname "$0")/.."
case "${1:-}" in
--down)
	exec node dist/hack/demo/cluster-demo.js "$@"
	;;
--lab)
	shift
	bash scripts/setup.sh
	exec node --enable-source-maps dist/hack/demo/datapath-demo.js "$@"
	;;
esac
export WEIR_DEMO_T0="$(date +%s%3N)"
printf '==> building Weir (Debian and npm packages, eBPF objects, addon, weir-cni, TypeScript; cached)\n'
bash scripts/setup.sh
exec node --enable-source-maps dist/hack/demo/cluster-demo.js "$@"
