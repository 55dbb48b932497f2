#!/usr/bin/env bash
# image.sh BINARY NAME:TAG OUT.tar [ARG...]: writes a docker-archive image
# (what `ctr images import` and `docker load` read) holding only BINARY, as
# /BINARY-NAME, FROM scratch, with it as the entrypoint (ARGs as its command).
# The test node's images are made this way: nothing can be pulled.
set -euo pipefail
. "$(dirname "$0")/archive.sh"
binary="$1" ref="$2" out="$3"
shift 3
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
base="$(basename "$binary")"
mkdir "$work/root"
cp "$binary" "$work/root/$base"
chmod 0755 "$work/root/$base"
tar -C "$work/root" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" "$base"
cmd=""
for a in "$@"; do cmd="$cmd${cmd:+, }\"$a\""; done
write_archive "$work/layer.tar" "$ref" "$out" "{\"Entrypoint\": [\"/$base\"], \"Cmd\": [$cmd], \"Env\": [\"PATH=/\"]}"
