#!/usr/bin/env bash
# Lint and format checks: ESLint (typescript-eslint) and Prettier over the TypeScript,
# clang-format over Weir's C and C++. Fails on any finding; `--fix` rewrites instead.
# The test command runs this first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --fix ]; then
	npx eslint --fix .
	npx prettier --write --log-level warn "**/*.{ts,tsx,js,css}"
	bash scripts/lint-c.sh --fix
	exit 0
fi
npx eslint .
npx prettier --check --log-level warn "**/*.{ts,tsx,js,css}"
bash scripts/lint-c.sh
echo "lint: eslint, prettier and clang-format clean"
