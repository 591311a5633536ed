#!/usr/bin/env bash
# The whole test suite: installs and builds what it needs, then runs every tier.
# Usage: scripts/test.sh [tier ...]   (tiers: unit kernel runtime cluster; default all)
set -euo pipefail
. "$(dirname "$0")/as-root.sh" "$0" "$@"
cd "$(dirname "$0")/.."
bash scripts/setup.sh

tiers=("$@")
[ "${#tiers[@]}" -gt 0 ] || tiers=(unit kernel runtime cluster)
# The cluster tier runs Kubernetes built from source: the first build takes minutes
# and prints its progress here; later runs find it cached (hack/cluster/README.md).
for t in "${tiers[@]}"; do
	if [ "$t" = cluster ]; then bash hack/cluster/build-binaries.sh; fi
done
files=()
for t in "${tiers[@]}"; do
	[ -d "dist/test/$t" ] || continue
	while IFS= read -r f; do files+=("$f"); done < <(find "dist/test/$t" -name '*.test.js' | sort)
done
if [ "${#files[@]}" -eq 0 ]; then
	echo "no test files found for tiers: ${tiers[*]}" >&2
	exit 1
fi
# Root tiers share the kernel's state (netns, bpffs): run files one at a time.
exec node --enable-source-maps --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
