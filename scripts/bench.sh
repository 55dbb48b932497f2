#!/usr/bin/env bash
# `make bench`: the catalog beside Vault's built-in one and a plain external
# plugin (bench/), the hosting tables on Vault and on OpenBao, hosted kv in
# a pod of the test Kubernetes node beside on Docker (as root), then a
# plugin check beside `docker run` (runtime/).
set -euo pipefail
cd "$(dirname "$0")/.."
VAULT_BINARY="$(scripts/build-vault.sh)"
KV_PLUGIN_BINARY="$(scripts/build-kv-plugin.sh)"
BAO_BINARY="$(scripts/build-openbao.sh)"
export VAULT_BINARY KV_PLUGIN_BINARY BAO_BINARY RC_ACC=1
if [ "$(id -u)" = 0 ]; then
  # The hosting tables and the plugin check need a Docker Engine with runc
  # and runsc; the pod rows start a test node from these parts
  # (internal/k8stest). Not root: the Docker Engine as it is, and no pod
  # rows (bench says so).
  scripts/start-docker.sh
  RC_K8S_BIN="$(scripts/build-k8s.sh)"
  export RC_K8S_BIN
fi
go run ./bench "$@"
go test -run '^$' -bench . -benchtime 5x ./runtime/
