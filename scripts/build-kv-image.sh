#!/usr/bin/env bash
# Builds HashiCorp's kv plugin (scripts/build-kv-plugin.sh) into an image
# FROM scratch, kv-plugin:0.25.0, on the Docker Engine, unless it is there;
# prints its ID. The README's and `make dev`'s examples host this image.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=kv-plugin:0.25.0
id="$(docker images --no-trunc -q "$tag" 2>/dev/null || true)"
if [ -n "$id" ]; then
  echo "$id"
  exit 0
fi
binary="$(scripts/build-kv-plugin.sh)"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/plugin"
printf 'FROM scratch\nCOPY plugin /plugin\nENTRYPOINT ["/plugin"]\n' > "$context/Dockerfile"
echo "building $tag from $binary" >&2
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$context" >/dev/null
docker images --no-trunc -q "$tag"
