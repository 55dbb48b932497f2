#!/usr/bin/env bash
# Builds one of HashiCorp's plugins (scripts/build-hashicorp-plugin.sh) into
# an image FROM scratch on the Docker Engine, unless it is there, and prints
# its ID: `kv` is kv-plugin:0.25.0 (the README's and `make dev`'s hosted
# secrets engine), `jwt` is jwt-auth-plugin:0.26.1 (the README's hosted auth
# method).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  kv)  tag=kv-plugin:0.25.0 ;;
  jwt) tag=jwt-auth-plugin:0.26.1 ;;
  *) echo "usage: $0 kv|jwt" >&2; exit 2 ;;
esac
id="$(docker images --no-trunc -q "$tag" 2>/dev/null || true)"
if [ -n "$id" ]; then
  echo "$id"
  exit 0
fi
binary="$(scripts/build-hashicorp-plugin.sh "$1")"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/plugin"
printf 'FROM scratch\nCOPY plugin /plugin\nENTRYPOINT ["/plugin"]\n' > "$context/Dockerfile"
echo "building $tag from $binary" >&2
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$context" >/dev/null
docker images --no-trunc -q "$tag"
