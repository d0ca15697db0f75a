#!/bin/sh
# Renders the Helm chart with its defaults into the plain manifest
# deploy/kubernetes/daemonset.yaml (make manifest; make check-manifest
# fails when the two differ).
#
#   deploy/render-manifest.sh HELM
set -eu
helm=$1
chart=$(dirname "$0")/helm/holdfast
cat <<'HEADER'
# holdfast on every containerd node: the engine, and the NRI plugin that
# registers containerd's containers with it. GENERATED from the Helm chart
# deploy/helm/holdfast with its default values by `make manifest`: edit the
# chart, not this file. For CRI-O nodes render the chart with
# --set runtime=crio (an init container installs the OCI hook).
# Build the image with `make image` and push it where your nodes pull from.
# Policies come from the ConfigMap; the engine applies edits within seconds.
HEADER
"$helm" template holdfast "$chart" --namespace holdfast-system --set namespace.create=true
