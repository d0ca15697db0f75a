#!/bin/sh
# Builds containerd, its runc shim, ctr and (optionally) crictl from the Go
# module proxy into a cache dir, once. Reruns with the same versions skip.
#
#   test/scripts/build-containerd.sh [BIN_DIR]
#
# BIN_DIR defaults to $HOLDFAST_CONTAINERD_BIN or
# /var/cache/holdfast/containerd-v2.4.2/bin. Set WITH_CRICTL=1 to add crictl
# (handy by hand; the tests drive CRI from Go).
set -eu

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
WITH_CRICTL=${WITH_CRICTL:-0}
BIN_DIR=${1:-${HOLDFAST_CONTAINERD_BIN:-/var/cache/holdfast/containerd-${CONTAINERD_VERSION}/bin}}

mkdir -p "$BIN_DIR"
BIN_DIR=$(cd "$BIN_DIR" && pwd)

# Build outside any module so the caller's go.mod is never touched.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

install_cmd() { # name package version
	name=$1 pkg=$2 version=$3
	stamp="$BIN_DIR/.$name.version"
	if [ -x "$BIN_DIR/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
		echo "$name $version: cached in $BIN_DIR"
		return 0
	fi
	echo "$name $version: building into $BIN_DIR"
	CGO_ENABLED=0 GOBIN="$BIN_DIR" GOFLAGS=-buildvcs=false \
		go install -tags no_btrfs "$pkg@$version"
	echo "$version" >"$stamp"
}

install_cmd containerd github.com/containerd/containerd/v2/cmd/containerd "$CONTAINERD_VERSION"
install_cmd containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 "$CONTAINERD_VERSION"
install_cmd ctr github.com/containerd/containerd/v2/cmd/ctr "$CONTAINERD_VERSION"
if [ "$WITH_CRICTL" = 1 ]; then
	install_cmd crictl sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION"
fi
"$BIN_DIR/containerd" --version
