# Sourced by the scripts that need root (network namespaces, eBPF, containerd):
# as root they go on; otherwise they re-run themselves through sudo, or say plainly
# that root is needed when there is no sudo (a bare machine of this image is root-only).
#   . "$(dirname "$0")/as-root.sh" "$0" "$@"
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		printf '==> %s needs root: re-running it with sudo\n' "$(basename "$1")" >&2
		exec sudo -E bash "$@"
	fi
	printf '%s needs root (network namespaces, eBPF, containerd) and this machine has no sudo: run it as root, e.g. su -c "bash %s"\n' "$(basename "$1")" "$1" >&2
	exit 1
fi
