#!/usr/bin/env bash
# Vendors Istio's AuthorizationPolicy and PeerAuthentication CRDs into
# deploy/crds/istio-security.yaml from the published Go module istio.io/api at the
# version pinned here, through the Go module proxy (go mod download checks the module
# against the checksum database). Reproducible: the same version writes the same file.
#   bash hack/crds/update-istio-crds.sh
# To move to another Istio release, change ISTIO_API_VERSION and run it again.
set -euo pipefail
ISTIO_API_VERSION=v1.32.0
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
go="${GO:-/usr/local/go/bin/go}"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
cd "$root"

info="$("$go" mod download -json "istio.io/api@$ISTIO_API_VERSION")"
field() { node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8")); if (j.Error) { console.error(j.Error); process.exit(1) } process.stdout.write(String(j[process.argv[1]]))' "$1" <<<"$info"; }
dir="$(field Dir)"
sum="$(field Sum)"
grep -q 'Apache License' "$dir/LICENSE" || { echo "istio.io/api@$ISTIO_API_VERSION: LICENSE is not the Apache License" >&2; exit 1; }

[ -f dist/hack/crds/extract-istio-crds.js ] && [ dist/hack/crds/extract-istio-crds.js -nt hack/crds/extract-istio-crds.ts ] || npx tsc -p tsconfig.json
mkdir -p deploy/crds
node dist/hack/crds/extract-istio-crds.js --source "$dir/kubernetes/customresourcedefinitions.gen.yaml" \
	--module "istio.io/api@$ISTIO_API_VERSION" --sum "$sum" --out deploy/crds/istio-security.yaml
