#!/usr/bin/env bash
# Builds one of HashiCorp's external plugins from the Go module proxy,
# statically, and prints its path: `kv` (the secrets engine the hosting
# tests, the README and the benchmark host) or `jwt` (the auth method the
# auth hosting tests host). Cached outside the work tree, keyed by version.
set -euo pipefail

case "${1:-}" in
  kv)  module=github.com/hashicorp/vault-plugin-secrets-kv; cmd=vault-plugin-secrets-kv; version="${KV_VERSION:-v0.25.0}" ;;
  jwt) module=github.com/hashicorp/vault-plugin-auth-jwt; cmd=vault-plugin-auth-jwt; version="${JWT_VERSION:-v0.26.1}" ;;
  *) echo "usage: $0 kv|jwt" >&2; exit 2 ;;
esac
cache_root="${VAULT_CACHE_DIR:-$(dirname "$(go env GOCACHE)")/vault-plugin-runtime-catalog}"
dir="$cache_root/$1-$version"
if [ ! -x "$dir/$cmd" ]; then
  echo "building $cmd $version (first time only)" >&2
  mkdir -p "$dir"
  GOBIN="$dir" CGO_ENABLED=0 go install "$module/cmd/$cmd@$version" >&2
fi
echo "$dir/$cmd"
