#!/usr/bin/env bash
# carrier-image.sh OUT.tar [NAME:TAG]: builds the Kubernetes engine's carrier
# (runtime/kubernetes/carrier) as a static binary and writes its image, FROM
# scratch with the program at /carrier, as a docker-archive (`ctr -n k8s.io
# images import OUT.tar` on a node, `docker load` for a registry push). The
# default name is the engine's DefaultCarrierImage.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$1"
version="$(sed -n 's/^\tCarrierVersion = "\(.*\)"$/\1/p' "$root/runtime/kubernetes/engine.go")"
ref="${2:-vault-plugin-runtime-catalog/carrier:$version}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/carrier" ./runtime/kubernetes/carrier)
"$here/image.sh" "$work/carrier" "$ref" "$out"
echo "$ref"
