#!/usr/bin/env bash
# Builds HashiCorp's kv secrets plugin as an external binary, the benchmark's
# reference for a plain external plugin, and prints its path. Cached outside
# the work tree, keyed by version.
set -euo pipefail

KV_VERSION="${KV_VERSION:-v0.25.0}"
cache_root="${VAULT_CACHE_DIR:-$(dirname "$(go env GOCACHE)")/vault-plugin-runtime-catalog}"
dir="$cache_root/kv-$KV_VERSION"
if [ ! -x "$dir/vault-plugin-secrets-kv" ]; then
  echo "building vault-plugin-secrets-kv $KV_VERSION (first time only)" >&2
  mkdir -p "$dir"
  GOBIN="$dir" CGO_ENABLED=0 go install "github.com/hashicorp/vault-plugin-secrets-kv/cmd/vault-plugin-secrets-kv@$KV_VERSION" >&2
fi
echo "$dir/vault-plugin-secrets-kv"
