#!/usr/bin/env bash
# Installs what holdfast's build, tests and demo need on Debian 12, as root.
# Idempotent and quiet: it asks apt only when a package is missing, and only
# mounts bpffs when it is not mounted yet.
set -euo pipefail

# clang/llvm/libbpf-dev/linux-libc-dev: go generate ./bpf/ (bpf2go, llvm-strip).
# bpftool: inspecting pins. runc/podman/busybox-static/jq/iproute2: e2e tests
# and the demo. git: the generated-code check. gcc/libc6-dev: cgo in go test.
packages=(
	clang llvm libbpf-dev linux-libc-dev bpftool
	runc podman busybox-static jq iproute2
	make git ca-certificates gcc libc6-dev util-linux procps nftables
)

log() { echo "install-deps: $*"; }
die() { echo "install-deps: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (installs packages, mounts bpffs)"

installed() { # package
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
	command -v apt-get >/dev/null || die "missing ${missing[*]} and apt-get is not available (Debian 12 expected)"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Quiet unless apt fails; then its whole output explains why.
	run_apt() {
		local out
		out=$(apt-get "$@" 2>&1) || { echo "$out" >&2; die "apt-get $* failed"; }
	}
	run_apt update -qq
	# Recommends stay on: podman relies on them (catatonit, slirp4netns, netavark).
	run_apt install -y -qq "${missing[@]}"
fi

# Go is not packaged in a recent enough version; it must already be there.
if ! command -v go >/dev/null; then
	die "go not found in PATH; install Go $(sed -n 's/^go //p' "$(dirname "$0")/../../go.mod") or newer"
fi

# bpffs at its conventional place; the engine pins below it.
bpffs_mounted() {
	awk '$5 == "/sys/fs/bpf" { for (i = 6; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "bpf") found = 1; break } }
	     END { exit !found }' /proc/self/mountinfo
}
if ! bpffs_mounted; then
	log "mounting bpffs at /sys/fs/bpf"
	mkdir -p /sys/fs/bpf
	mount -t bpf bpf /sys/fs/bpf
fi

# Features no package can add: say so early rather than in a test failure.
[ -r /sys/kernel/btf/vmlinux ] || log "warning: /sys/kernel/btf/vmlinux is missing; CO-RE programs will not load"
grep -qw cgroup2 /proc/self/mountinfo || log "warning: no cgroup v2 mount; container enforcement needs one"
exit 0
