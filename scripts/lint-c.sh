#!/usr/bin/env bash
# Checks that Weir's own C and C++ is formatted as .clang-format says: the eBPF
# programs, the addon, weir-cni, the fixture and benchmark eBPF objects (not
# vendored code, not test/fixtures/cri). Rewrites nothing; exits non-zero on any
# difference. `scripts/lint-c.sh --fix` formats the same files in place.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
files=(
	native/bpf/*.c native/bpf/lib/*.h native/bpf/shared/*.h
	native/addon/src/*.cc native/addon/src/*.h
	native/cni/*.c
	test/fixtures/bpf/*.c
	bench/bpf/*.c
)
if ! command -v clang-format >/dev/null 2>&1; then
	echo "clang-format is missing: scripts/setup.sh installs it (Debian package clang-format)" >&2
	exit 2
fi
if [ "${1:-}" = --fix ]; then
	exec clang-format -i "${files[@]}"
fi
exec clang-format --dry-run --Werror "${files[@]}"
