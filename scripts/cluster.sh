#!/usr/bin/env bash
# `make cluster`: a 3-node Vault Raft cluster on 127.0.0.1 (free ports, TLS
# off on the API listeners) with the plugin in every node's plugin
# directory, registered by its sha256 and enabled at runtimes/. The nodes
# join with retry_join, are unsealed, and are all voters before it prints
# their addresses. Ctrl-C stops the nodes, their plugins and containers, and
# exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
# SERVER=openbao: OpenBao's nodes (scripts/build-openbao.sh gives bao).
case "${SERVER:-vault}" in
  vault) VAULT_BINARY="$(scripts/build-vault.sh)"; export VAULT_BINARY ;;
  openbao) BAO_BINARY="$(scripts/build-openbao.sh)"; export BAO_BINARY ;;
  *) echo "SERVER=$SERVER: it is vault (the default) or openbao" >&2; exit 2 ;;
esac
export RC_ACC=1
if [ "$(id -u)" = 0 ]; then
  scripts/start-docker.sh || echo "Docker Engine not started: hosted mounts will fail until it runs" >&2
fi
# Built and run, not `go run`: go run answers a Ctrl-C with exit status 1
# whatever the program's own, and make then reports an error.
bin="$(mktemp -d /tmp/rc-cluster.XXXXXX)"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/cluster" ./cluster
"$bin/cluster" "$@"
