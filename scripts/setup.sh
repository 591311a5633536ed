#!/usr/bin/env bash
# Installs what Weir needs on a Debian machine and builds it. Idempotent: a second
# run installs nothing and rebuilds only what changed.
set -euo pipefail
. "$(dirname "$0")/as-root.sh" "$0" "$@"
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^\s*$/d' scripts/debian-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	step "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js 20 or newer runs Weir's TypeScript (fastify 5, commander 14 need it). The
# machine image this project targets ships it; say so plainly where it is missing.
if ! command -v node >/dev/null 2>&1; then
	step "installing Node.js from Debian"
	apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
	echo "Weir needs Node.js 20 or newer; this machine has $(node --version) at $(command -v node)." >&2
	exit 1
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	step "installing npm packages"
	npm ci --no-audit --no-fund
fi

step "building eBPF objects"
make -s -C native/bpf
make -s -C bench/bpf
step "building test fixture eBPF objects"
make -s -C test/fixtures/bpf
step "building the weir-cni executable (static)"
make -s -C native/cni
step "building the addon"
npx cmake-js compile -d native/addon -O build/addon --log-level error >/dev/null
step "compiling TypeScript"
npx tsc -p tsconfig.json
# The web UI (ui/, its own package and build): bundled into ui/dist, which
# weir-controller serves and the agent image carries. Rebuilt only when a source changed,
# the wire types it shares with the server (src/shared/wire.ts) included.
if [ ! -d ui/node_modules ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
	step "installing the web UI's npm packages"
	(cd ui && npm ci --no-audit --no-fund)
fi
if [ ! -f ui/dist/index.html ] || [ -n "$(find ui/src ui/index.html ui/vite.config.ts ui/tsconfig.json ui/package-lock.json src/shared/wire.ts -newer ui/dist/index.html -print -quit)" ]; then
	step "building the web UI (ui/dist)"
	(cd ui && npm run --silent build >/dev/null)
fi
