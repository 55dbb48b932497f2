# The README's two commands: `make dev` and `make test`.
# `make k8s`: the test Kubernetes node, for a person (as root; Ctrl-C stops it).
BIN := bin/vault-plugin-runtime-catalog

.PHONY: build dev cluster test unit fmt vet bench k8s

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

# A single-node Kubernetes for tests (etcd, API server, scheduler, containerd
# with runc and runsc, kubelet) in a network namespace of its own; builds its
# parts once, prints its kubeconfig, and stops on Ctrl-C leaving nothing.
k8s:
	scripts/start-k8s.sh

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
