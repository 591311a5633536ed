#!/usr/bin/env bash
# The whole test suite: installs and builds what it needs, then runs every tier.
# Usage: scripts/test.sh [tier ...]   (tiers: unit kernel runtime cluster; default all)
# A tier that is not one of these, or that has no test files once built, is an error.
set -euo pipefail
. "$(dirname "$0")/as-root.sh" "$0" "$@"
cd "$(dirname "$0")/.."
known=(unit kernel runtime cluster)

tiers=("$@")
[ "${#tiers[@]}" -gt 0 ] || tiers=("${known[@]}")
for t in "${tiers[@]}"; do
	case " ${known[*]} " in
	*" $t "*) ;;
	*)
		echo "unknown tier '$t' (known tiers: ${known[*]})" >&2
		exit 2
		;;
	esac
done

bash scripts/setup.sh
# Lint and format first: a finding fails the suite before any test runs (scripts/lint.sh).
bash scripts/lint.sh
# The cluster tier runs Kubernetes built from source, and the upstream netpol e2e suite
# (test/cluster/netpol-e2e.test.ts): the first build takes minutes and prints its
# progress here; later runs find it cached (hack/cluster/README.md).
for t in "${tiers[@]}"; do
	if [ "$t" = cluster ]; then
		bash hack/cluster/build-binaries.sh
		bash hack/cluster/build-binaries.sh e2e
	fi
done
files=()
empty=()
for t in "${tiers[@]}"; do
	found=()
	if [ -d "dist/test/$t" ]; then
		while IFS= read -r f; do found+=("$f"); done < <(find "dist/test/$t" -name '*.test.js' | sort)
	fi
	[ "${#found[@]}" -gt 0 ] || empty+=("$t")
	files+=("${found[@]}")
done
if [ "${#empty[@]}" -gt 0 ]; then
	echo "no test files in dist/test/ for tier(s): ${empty[*]} (requested: ${tiers[*]}; is test/<tier>/ built?)" >&2
	exit 1
fi
# Root tiers share the kernel's state (netns, bpffs): run files one at a time.
exec node --enable-source-maps --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
