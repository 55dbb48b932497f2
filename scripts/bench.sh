#!/usr/bin/env bash
# `make bench`: the catalog beside Vault's built-in one and a plain external
# plugin (bench/), the hosting tables on Vault and on OpenBao, then a plugin
# check beside `docker run` (runtime/).
set -euo pipefail
cd "$(dirname "$0")/.."
VAULT_BINARY="$(scripts/build-vault.sh)"
KV_PLUGIN_BINARY="$(scripts/build-kv-plugin.sh)"
BAO_BINARY="$(scripts/build-openbao.sh)"
export VAULT_BINARY KV_PLUGIN_BINARY BAO_BINARY RC_ACC=1
go run ./bench "$@"
if [ "$(id -u)" = 0 ]; then
  scripts/start-docker.sh
fi
go test -run '^$' -bench . -benchtime 5x ./runtime/
