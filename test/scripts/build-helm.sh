#!/bin/sh
# Builds helm from the Go module proxy into a cache dir, once (a few minutes,
# about 90 MB). Reruns with the same version skip.
#
#   test/scripts/build-helm.sh [BIN_DIR]
#
# BIN_DIR defaults to $HOLDFAST_HELM_BIN or /var/cache/holdfast/helm-v3.22.0/bin,
# next to the containerd build of build-containerd.sh.
set -eu

HELM_VERSION=${HELM_VERSION:-v3.22.0}
BIN_DIR=${1:-${HOLDFAST_HELM_BIN:-/var/cache/holdfast/helm-${HELM_VERSION}/bin}}

mkdir -p "$BIN_DIR"
BIN_DIR=$(cd "$BIN_DIR" && pwd)
stamp="$BIN_DIR/.helm.version"
if [ -x "$BIN_DIR/helm" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$HELM_VERSION" ]; then
	echo "helm $HELM_VERSION: cached in $BIN_DIR"
	exit 0
fi

# Build outside any module so the caller's go.mod is never touched.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "helm $HELM_VERSION: building into $BIN_DIR"
CGO_ENABLED=0 GOBIN="$BIN_DIR" GOFLAGS=-buildvcs=false \
	go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "$HELM_VERSION" >"$stamp"
"$BIN_DIR/helm" version --short
