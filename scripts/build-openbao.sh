#!/usr/bin/env bash
# Prints the path of an OpenBao server binary (`bao`): $BAO_BINARY when it is
# set, else one built once from the OpenBao 2.6.2 source in ../shared/openbao
# (the Go module proxy cannot serve OpenBao: its v2 tags lack /v2 in the
# module path, and five of its KMS wrapper modules are refused; the tarball
# carries those in-tree) and cached outside the work tree, keyed by version,
# as Vault's build is. The first build takes 8 to 10 minutes on 2 cores.
# Without either, it says how to get one and exits 1. The version is set
# through version.fullVersion: version.Version is derived from it at init,
# so -X on Version itself changes nothing ("OpenBao v2.0.0-HEAD").
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${BAO_BINARY:-}" ]; then
  [ -x "$BAO_BINARY" ] || { echo "BAO_BINARY=$BAO_BINARY is not an executable" >&2; exit 1; }
  echo "$BAO_BINARY"
  exit 0
fi

BAO_VERSION="${BAO_VERSION:-2.6.2}"
source_tar="${BAO_SOURCE:-../shared/openbao/openbao-$BAO_VERSION-src.tar.xz}"
cache_root="${VAULT_CACHE_DIR:-$(dirname "$(go env GOCACHE)")/vault-plugin-runtime-catalog}"
out="$cache_root/openbao-$BAO_VERSION/bao"

if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
if [ ! -f "$source_tar" ]; then
  echo "no OpenBao: set BAO_BINARY to a bao binary, or put OpenBao's source at $source_tar" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
  echo "building OpenBao $BAO_VERSION from $source_tar (first time only: about 10 minutes)"
  tar -xJf "$source_tar" -C "$work"
  mkdir -p "$(dirname "$out")"
  (cd "$work/openbao-$BAO_VERSION" &&
    go build -ldflags "-X github.com/openbao/openbao/version.fullVersion=$BAO_VERSION" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
} >&2
echo "$out"
