#!/usr/bin/env bash
# Builds the local cluster's upstream binaries from their Go modules (never a prebuilt
# download) into a cache directory keyed by version, outside the repository:
#   $WEIR_CACHE/kubernetes-<v>/bin  kube-apiserver kube-controller-manager kube-scheduler
#                                   kubelet kube-proxy kubectl
#   $WEIR_CACHE/etcd-<v>/bin        etcd
#   $WEIR_CACHE/coredns-<v>/bin     coredns
#   $WEIR_CACHE/cni-<v>/bin         cnitool
# Idempotent: a component whose bin/.complete exists is skipped, so a warm run is instant.
#   $WEIR_CACHE/e2e-<v>/bin         e2e.test agnhost ginkgo (only when asked for: e2e)
# Usage: hack/cluster/build-binaries.sh [kubernetes|etcd|coredns|cni|e2e ...]
#        (default: etcd cni coredns kubernetes)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"
cache="${WEIR_CACHE:-/var/cache/weir}"
go="${GO:-/usr/local/go/bin/go}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start=$(date +%s)
say() { printf '[build %4ss] %s\n' "$(( $(date +%s) - start ))" "$*" >&2; }

# go build -v prints one line per compiled package: turn it into a progress count.
progress() {
	local what="$1" n=0 line
	while IFS= read -r line; do
		case "$line" in
		*" "* | "") printf '%s\n' "$line" >&2 ;; # errors and warnings pass through
		*) n=$((n + 1)); if [ $((n % 100)) -eq 0 ]; then say "$what: $n packages compiled"; fi ;;
		esac
	done
	say "$what: $n packages compiled in total"
}

# A module that requires an upstream main module whose go.mod has directory replace
# directives (which `go install pkg@version` refuses): the same replacements, pointed
# at the published versions of those modules instead.
gen_build_module() { # dir module version replace-module...
	local dir="$1" mod="$2" ver="$3" rver="$4"; shift 4
	mkdir -p "$dir"
	{
		echo "module weir.local/build"
		echo
		echo "go 1.25.0"
		echo
		echo "require $mod $ver"
		echo
		echo "replace ("
		for r in "$@"; do echo "	$r => $r $rver"; done
		echo ")"
	} >"$dir/go.mod"
}

# The build module for k8s.io/kubernetes@$KUBERNETES_VERSION in dir $1: its ./staging
# replacements pointed at the published v0.<minor>.<patch> modules. With
# --upstream-requires it also requires everything upstream's go.mod requires, at
# upstream's versions: test packages reach modules (cli-runtime, kube-aggregator,
# sample-apiserver, ...) that `go get -t` leaves out of a pruned module graph, and the
# build would otherwise stop at "updates to go.mod needed".
gen_kubernetes_module() { # dir [--upstream-requires]
	local v="$KUBERNETES_VERSION" staging_v="v0.${KUBERNETES_VERSION#v1.}"
	"$go" mod download -json "k8s.io/kubernetes@$v" >/dev/null
	local gomod; gomod="$("$go" env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$v.mod"
	mapfile -t staging < <(sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")
	gen_build_module "$1" k8s.io/kubernetes "$v" "$staging_v" "${staging[@]}"
	if [ "${2:-}" = --upstream-requires ]; then
		{
			echo
			echo "require ("
			awk '/^require \(/ { b = 1; next } b && /^\)/ { b = 0; next } b { print }
				/^require [^(]/ { sub(/^require /, ""); print }' "$gomod" | sed 's#//.*##' | awk 'NF == 2 { print "\t" $1 " " $2 }'
			echo ")"
		} >>"$1/go.mod"
	fi
}

# -ldflags stamping the version into component-base and client-go, as upstream's build does.
kubernetes_ldflags() {
	local v="$KUBERNETES_VERSION" minor="${KUBERNETES_VERSION#v1.}" ld="-s -w" p
	minor="${minor%%.*}"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor"
		ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	done
	printf '%s' "$ld"
}

build_kubernetes() {
	local v="$KUBERNETES_VERSION" out="$cache/kubernetes-$KUBERNETES_VERSION"
	[ -f "$out/bin/.complete" ] && { say "kubernetes $v: cached in $out/bin"; return; }
	say "kubernetes $v: resolving modules (cold build: about 7 minutes on 2 cores, plus module downloads)"
	gen_kubernetes_module "$out/src"
	local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
	local pkgs=() c
	for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
	(cd "$out/src" && "$go" get "${pkgs[@]/%/@$v}" >/dev/null 2>&1 || (cd "$out/src" && "$go" get "${pkgs[@]/%/@$v}"))
	local ld; ld="$(kubernetes_ldflags)"
	mkdir -p "$out/bin"
	say "kubernetes $v: compiling ${cmds[*]}"
	(cd "$out/src" && "$go" build -v -trimpath -ldflags "$ld" -o "$out/bin/" "${pkgs[@]}" 2>&1) | progress "kubernetes"
	for c in "${cmds[@]}"; do [ -x "$out/bin/$c" ] || { say "kubernetes: $c missing"; exit 1; }; done
	touch "$out/bin/.complete"
	say "kubernetes $v: done ($out/bin)"
}

build_etcd() {
	local v="$ETCD_VERSION" out="$cache/etcd-$ETCD_VERSION"
	[ -f "$out/bin/.complete" ] && { say "etcd $v: cached in $out/bin"; return; }
	say "etcd $v: resolving modules"
	gen_build_module "$out/src" go.etcd.io/etcd/server/v3 "$v" "$v" \
		go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3
	(cd "$out/src" && "$go" get "go.etcd.io/etcd/server/v3@$v")
	mkdir -p "$out/bin"
	say "etcd $v: compiling"
	(cd "$out/src" && "$go" build -v -trimpath -ldflags "-s -w" -o "$out/bin/etcd" go.etcd.io/etcd/server/v3 2>&1) | progress etcd
	touch "$out/bin/.complete"
	say "etcd $v: done ($out/bin)"
}

# The upstream e2e suite and what it runs in pods, from the same k8s.io/kubernetes module:
#   $WEIR_CACHE/e2e-<v>/bin  e2e.test (go test -c k8s.io/kubernetes/test/e2e), agnhost
#                            (test/images/agnhost, static), ginkgo (the CLI of the
#                            onsi/ginkgo/v2 version kubernetes requires, for parallel runs)
# Not part of the default set: only scripts/e2e.sh needs it.
build_e2e() {
	local v="$KUBERNETES_VERSION" out="$cache/e2e-$KUBERNETES_VERSION"
	[ -f "$out/bin/.complete" ] && { say "e2e $v: cached in $out/bin"; return; }
	say "e2e $v: resolving modules (cold build: tens of minutes on 2 cores)"
	gen_kubernetes_module "$out/src" --upstream-requires
	local suite=k8s.io/kubernetes/test/e2e agnhost=k8s.io/kubernetes/test/images/agnhost
	# -t: the suite's test-only imports (every test/e2e/... package) join the build list.
	(cd "$out/src" && "$go" get -t "$suite@$v" "$agnhost@$v")
	local ld; ld="$(kubernetes_ldflags)"
	mkdir -p "$out/bin"
	say "e2e $v: compiling agnhost"
	(cd "$out/src" && "$go" build -v -trimpath -ldflags "-s -w" -o "$out/bin/agnhost" "$agnhost" 2>&1) | progress agnhost
	# go test -c prints nothing while it compiles: build the suite's packages first with
	# -v (progress; the same flags, so the build cache serves go test -c), then link.
	local deps
	mapfile -t deps < <(cd "$out/src" && "$go" list -deps -test \
		-f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$suite" | grep -v -e ' ' -e '\.test$')
	[ "${#deps[@]}" -gt 0 ] || { say "e2e: go list found no packages for $suite"; exit 1; }
	say "e2e $v: compiling ${#deps[@]} packages of $suite"
	(cd "$out/src" && "$go" build -v -trimpath "${deps[@]}" 2>&1) | progress e2e
	say "e2e $v: linking e2e.test"
	(cd "$out/src" && "$go" test -c -trimpath -ldflags "$ld" -o "$out/bin/e2e.test" "$suite")
	local gv; gv="$(cd "$out/src" && "$go" list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2)"
	say "e2e $v: compiling the ginkgo CLI $gv"
	GOBIN="$out/bin" "$go" install -v -trimpath -ldflags "-s -w" "github.com/onsi/ginkgo/v2/ginkgo@$gv" 2>&1 | progress ginkgo
	local b
	for b in e2e.test agnhost ginkgo; do [ -x "$out/bin/$b" ] || { say "e2e: $b missing"; exit 1; }; done
	touch "$out/bin/.complete"
	say "e2e $v: done ($out/bin)"
}

# Modules without replace directives: plain `go install pkg@version`.
build_install() { # name version pkg
	local name="$1" v="$2" pkg="$3" out="$cache/$1-$2"
	[ -f "$out/bin/.complete" ] && { say "$name $v: cached in $out/bin"; return; }
	mkdir -p "$out/bin"
	say "$name $v: compiling $pkg"
	GOBIN="$out/bin" "$go" install -v -trimpath -ldflags "-s -w" "$pkg@$v" 2>&1 | progress "$name"
	touch "$out/bin/.complete"
	say "$name $v: done ($out/bin)"
}

what=("$@")
[ "${#what[@]}" -gt 0 ] || what=(etcd cni coredns kubernetes)
for w in "${what[@]}"; do
	case "$w" in
	kubernetes) build_kubernetes ;;
	etcd) build_etcd ;;
	coredns) build_install coredns "$COREDNS_VERSION" github.com/coredns/coredns ;;
	cni) build_install cni "$CNI_VERSION" github.com/containernetworking/cni/cnitool ;;
	e2e) build_e2e ;;
	*) echo "unknown component: $w" >&2; exit 2 ;;
	esac
done
say "all built"
