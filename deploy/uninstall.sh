#!/usr/bin/env bash
# Removes Weir from a cluster and restores every node: weir-controller, then the agent DaemonSet go first
# (pods keep running; nothing new is wired), then a cleanup DaemonSet detaches Weir's
# eBPF programs and removes its pins, the capture's routing rule and table, its CNI
# config, the executables it installed and /var/run/weir on every node, then
# everything of Weir's is deleted.
#   deploy/uninstall.sh            (uses kubectl from PATH and the current context)
#   KUBECTL="kubectl --context kind-weir" deploy/uninstall.sh
# Other CNI configs and plugins on the nodes are left as they were. Pods that Weir
# wired keep their interfaces until they are deleted; new pods need another CNI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
read -r -a kubectl <<<"${KUBECTL:-kubectl}"
timeout="${WEIR_UNINSTALL_TIMEOUT:-180s}"

step() { printf '==> %s\n' "$*" >&2; }

# weir-controller's pods were wired by Weir: they go while the agent can still answer
# their CNI DEL (without it, kubelet would retry the DEL and the pods, and with them the
# namespace, would never finish terminating).
step "deleting weir-controller (its pods' CNI DEL needs the agent)"
"${kubectl[@]}" -n weir-system delete deployment weir-controller --ignore-not-found --wait=true --timeout="$timeout"
"${kubectl[@]}" -n weir-system wait --for=delete pod -l app.kubernetes.io/name=weir-controller --timeout="$timeout" 2>/dev/null || true

step "deleting the weir-ztunnel DaemonSet (meshed pods' connections to meshed pods fail closed until the agent is gone too)"
"${kubectl[@]}" -n weir-system delete daemonset weir-ztunnel --ignore-not-found --wait=true --timeout="$timeout"

step "deleting the weir-agent DaemonSet"
"${kubectl[@]}" -n weir-system delete daemonset weir-agent --ignore-not-found --wait=true --timeout="$timeout"
"${kubectl[@]}" -n weir-system wait --for=delete pod -l app.kubernetes.io/name=weir-agent --timeout="$timeout" 2>/dev/null || true

step "cleaning every node (weir-cleanup DaemonSet)"
if ! "${kubectl[@]}" get namespace weir-system >/dev/null 2>&1; then
	"${kubectl[@]}" create namespace weir-system
fi
"${kubectl[@]}" apply -k "$here/uninstall"
"${kubectl[@]}" -n weir-system rollout status daemonset weir-cleanup --timeout="$timeout"
for pod in $("${kubectl[@]}" -n weir-system get pods -l app.kubernetes.io/name=weir-cleanup -o name); do
	"${kubectl[@]}" -n weir-system logs "$pod" -c uninstall | sed "s|^|  ${pod#pod/}: |" >&2 || true
done

step "deleting Weir's resources"
"${kubectl[@]}" delete -k "$here/uninstall" --ignore-not-found --wait=true --timeout="$timeout"
"${kubectl[@]}" delete -k "$here" --ignore-not-found --wait=true --timeout="$timeout"
step "Weir is uninstalled"
