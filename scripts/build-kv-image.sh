#!/usr/bin/env bash
# Builds HashiCorp's kv plugin into the image kv-plugin:0.25.0 FROM scratch,
# unless it is there; prints its ID. The README's and `make dev`'s examples
# host this image.
exec "$(dirname "$0")/build-hashicorp-image.sh" kv
