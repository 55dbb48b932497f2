#!/usr/bin/env bash
# Builds the pinned Vault binary from the Go module proxy and prints its path.
#
# Vault is built in a throwaway module of its own (it pulls in ~500 modules we
# do not want in the plugin's go.mod). Release tags do not build as a
# dependency with the sdk they name, so the sdk is replaced by a published one
# that does (v1.21.0 with sdk v0.20.0; others tried failed to compile). The
# go.sum shipped inside the vault module is copied in, because one
# dependency's checksum cannot be verified otherwise. The binary is cached
# outside the work tree, keyed by version, so CI and `make dev` build it once.
set -euo pipefail

VAULT_VERSION="${VAULT_VERSION:-v1.21.0}"
VAULT_SDK_VERSION="${VAULT_SDK_VERSION:-v0.20.0}"
cache_root="${VAULT_CACHE_DIR:-$(dirname "$(go env GOCACHE)")/vault-plugin-runtime-catalog}"
out="$cache_root/vault-$VAULT_VERSION-sdk-$VAULT_SDK_VERSION/vault"

if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi

mod="$(mktemp -d)"
trap 'rm -rf "$mod"' EXIT
cd "$mod"
{
  echo "building Vault $VAULT_VERSION (first time only: several minutes)"
  go mod init vault-build
  go mod edit -require="github.com/hashicorp/vault@$VAULT_VERSION" \
    -replace="github.com/hashicorp/vault/sdk=github.com/hashicorp/vault/sdk@$VAULT_SDK_VERSION"
  go mod download github.com/hashicorp/vault@"$VAULT_VERSION"
  # Without Vault's own go.sum one dependency's checksum cannot be verified here.
  cp "$(go env GOMODCACHE)/github.com/hashicorp/vault@$VAULT_VERSION/go.sum" go.sum
  chmod u+w go.sum
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/hashicorp/vault"
GO
  go mod tidy -e
  mkdir -p "$(dirname "$out")"
  go build -o "$out.tmp" github.com/hashicorp/vault
  mv "$out.tmp" "$out"
} >&2
echo "$out"
