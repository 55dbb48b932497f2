#!/usr/bin/env bash
# Builds HashiCorp's kv secrets plugin as an external binary, the benchmark's
# reference for a plain external plugin, and prints its path.
exec "$(dirname "$0")/build-hashicorp-plugin.sh" kv
