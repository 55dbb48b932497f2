#!/usr/bin/env bash
# `make dev`: a Vault dev server on 127.0.0.1:8200 (root token "root") with the
# plugin enabled at runtimes/, and HashiCorp's kv in an image (kv-plugin:0.25.0)
# to host. Ctrl-C stops it and exits 0; its log stays (the path is printed).
# `SERVER=openbao make dev` does the same on OpenBao (scripts/build-openbao.sh
# gives the bao binary), and its hints are bao commands.
#
# `scripts/dev.sh --hints ADDR SERVER_BINARY LOG` prints only the next steps,
# as a shell script a reader pastes: acceptance/readme_test.go runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --hints ]; then
  addr="$2" server="$3" log="$4"
  cli="$(basename "$server")"  # vault or bao
  prefix=VAULT_
  [ "$cli" = bao ] && prefix=BAO_
  # "Vault v1.21.0 (...)" or "OpenBao v2.6.2 (cgo)"
  name_version="$("$server" version | cut -d' ' -f1,2 | tr -d ,)"
  sed "s/^  vault /  $cli /" <<TXT

$name_version is running with the runtime catalog at runtimes/ (log: $log).
Paste these in order:

  export ${prefix}ADDR=http://$addr ${prefix}TOKEN=root PATH="$(dirname "$server"):\$PATH"

  vault write runtimes/catalog/container/limited oci_runtime=runsc cpu_nanos=500000000 memory_bytes=134217728
  vault read runtimes/catalog/container/limited
  vault list runtimes/catalog
  vault patch runtimes/catalog/container/limited cpu_nanos=1000000000
  vault path-help runtimes/catalog/container/limited

Host HashiCorp's kv from its local image (kv-plugin:0.25.0, which make dev built with
scripts/build-kv-image.sh) under that runtime:

  vault write runtimes/plugins/catalog/secret/kv oci_image=kv-plugin version=v0.25.0 runtime=limited \\
      sha256=\$(docker images --no-trunc -q kv-plugin:0.25.0)
  vault write runtimes/hosted/kv plugin=kv
  vault write runtimes/mounts/kv/app password=hunter2
  vault read runtimes/mounts/kv/app

And take it all down again, in the order things depend on each other:

  vault delete runtimes/hosted/kv
  vault delete runtimes/plugins/catalog/secret/kv
  vault delete runtimes/catalog/container/limited

Ctrl-C stops the server.
TXT
  exit 0
fi

addr="${RC_DEV_ADDR:-127.0.0.1:8200}" # the tests give it a free port
case "${SERVER:-vault}" in
  vault) server="$(scripts/build-vault.sh)" prefix=VAULT_ name=Vault ;;
  openbao) server="$(scripts/build-openbao.sh)" prefix=BAO_ name=OpenBao ;;
  *) echo "SERVER=$SERVER: it is vault (the default) or openbao" >&2; exit 2 ;;
esac
if [ "$(id -u)" = 0 ]; then
  scripts/start-docker.sh || echo "Docker Engine not started: plugin checks will fail until it runs" >&2
fi
if docker info >/dev/null 2>&1; then
  scripts/build-kv-image.sh >/dev/null || echo "kv-plugin:0.25.0 not built: the hosting hints need it" >&2
else
  echo "no Docker Engine answers (run make dev as root to have one started, or join the docker group):" \
    "kv-plugin:0.25.0 is not built, and the hosting hints will fail" >&2
fi

dir="$(mktemp -d /tmp/rc-dev.XXXXXX)"
log="${TMPDIR:-/tmp}/vault-plugin-runtime-catalog-dev.log"
mkdir -p "$dir/plugins"
cp bin/vault-plugin-runtime-catalog "$dir/plugins/"

"$server" server -dev -dev-root-token-id=root -dev-listen-address="$addr" \
  -dev-plugin-dir="$dir/plugins" -dev-no-store-token >"$log" 2>&1 &
server_pid=$!
stop() {
  kill -INT "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  rm -rf "$dir"
  echo "$name stopped; its log is $log" >&2
}
trap stop EXIT
trap 'exit 0' INT TERM

export "${prefix}ADDR=http://$addr" "${prefix}TOKEN=root"
for _ in $(seq 1 100); do
  "$server" status >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
# Compressed lists: the mount passes Accept-Encoding in and lets
# Content-Encoding and Vary out, and the plugin is told it may use them.
"$server" secrets enable -path=runtimes -passthrough-request-headers=Accept-Encoding \
  -allowed-response-headers=Content-Encoding -allowed-response-headers=Vary vault-plugin-runtime-catalog
"$server" write runtimes/config compress_lists=true >/dev/null

scripts/dev.sh --hints "$addr" "$server" "$log"
wait "$server_pid"
