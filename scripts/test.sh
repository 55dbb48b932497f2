#!/usr/bin/env bash
# `make test`: vet, then every test, with the real Vault and Docker Engine the
# acceptance and integration tests need. Under CI=true the tests fail rather
# than skip when either is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted="$(gofmt -l $(git ls-files '*.go'))"
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...

VAULT_BINARY="$(scripts/build-vault.sh)"
export VAULT_BINARY
echo "vault: $("$VAULT_BINARY" version)"

if [ "$(id -u)" = 0 ]; then
  scripts/start-docker.sh
else
  echo "not root: using the Docker Engine as it is (scripts/start-docker.sh needs root)" >&2
fi

# -p 2: two packages at once on two cores; the race detector on the backend,
# whose index is shared between concurrent requests.
go test -count=1 -race -timeout 20m .
go test -count=1 -p 2 -timeout 60m ./...
