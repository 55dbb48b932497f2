#!/usr/bin/env bash
# `make test`: vet, then every test, with the real Vault, OpenBao and Docker
# Engine the acceptance and integration tests need. Under CI=true the tests
# fail rather than skip when one is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...

VAULT_BINARY="$(scripts/build-vault.sh)"
KV_PLUGIN_BINARY="$(scripts/build-hashicorp-plugin.sh kv)"
JWT_PLUGIN_BINARY="$(scripts/build-hashicorp-plugin.sh jwt)"
# The acceptance tests run on OpenBao too; its first build takes about 10
# minutes (then it is cached). Without its source and without BAO_BINARY,
# its tests skip, or under CI=true fail, saying so.
BAO_BINARY="$(scripts/build-openbao.sh)" || BAO_BINARY=
export VAULT_BINARY KV_PLUGIN_BINARY JWT_PLUGIN_BINARY BAO_BINARY
echo "vault: $("$VAULT_BINARY" version)"
[ -z "$BAO_BINARY" ] || echo "openbao: $("$BAO_BINARY" version)"

if [ "$(id -u)" = 0 ]; then
  scripts/start-docker.sh
  # Two Podman services (one per OCI runtime) and Debian's docker-registry:
  # the integration tests run on Podman too, and start registries.
  eval "$(scripts/start-podman.sh)"
  export RC_PODMAN_RUNC RC_PODMAN_RUNSC
  # The test Kubernetes node's parts (internal/k8stest starts the node).
  RC_K8S_BIN="$(scripts/build-k8s.sh)"
  export RC_K8S_BIN
else
  echo "not root: using the Docker Engine as it is, without Podman (scripts/start-docker.sh and start-podman.sh need root)" >&2
fi
# Debian's Prometheus (installed as root when missing), for the test that
# scrapes hosted mounts' metrics through Vault; without it that test skips,
# or under CI=true fails.
PROMETHEUS_BINARY="$(scripts/install-prometheus.sh)" || PROMETHEUS_BINARY=
export PROMETHEUS_BINARY

# Every package once, with the tests on real parts (RC_ACC=1) and the race
# detector (the catalog and the runner are shared between goroutines); -p 2:
# two packages at once on two cores.
RC_ACC=1 go test -count=1 -race -p 2 -timeout 60m ./...
