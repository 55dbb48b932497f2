# The README's two commands: `make dev` and `make test`.
BIN := bin/vault-plugin-runtime-catalog

.PHONY: build dev cluster test unit fmt vet bench

build:
	CGO_ENABLED=0 go build -o $(BIN) ./cmd/vault-plugin-runtime-catalog

# Builds the plugin, starts a Vault dev server on 127.0.0.1:8200 with it
# enabled at runtimes/, and stops it on Ctrl-C.
dev: build
	scripts/dev.sh

# A 3-node Vault Raft cluster on 127.0.0.1 with the plugin registered on
# every node and enabled at runtimes/; prints the addresses, stops on Ctrl-C.
cluster:
	scripts/cluster.sh

# Everything: vet, unit tests, and the acceptance and integration tests on a
# real Vault and a real Docker Engine (installed and started if missing).
test:
	scripts/test.sh

# Unit tests only: no Vault, no Docker, even where they answer (the tests on
# real parts are opt-in: RC_ACC=1 or CI=true runs them).
unit:
	RC_ACC= CI= go test -count=1 ./...

fmt:
	gofmt -w .

vet:
	go vet ./...

bench:
	scripts/bench.sh
