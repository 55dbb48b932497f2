#!/usr/bin/env bash
# vault-image.sh SERVER NAME:TAG OUT.tar [PLUGIN...]: writes a docker-archive
# image (what `ctr images import` and `docker load` read) of a Vault or
# OpenBao server binary, FROM scratch, for running the server itself as a pod
# of the test node: the server at /BINARY-NAME (the entrypoint), each PLUGIN
# in /plugins (for -dev-plugin-dir=/plugins, or plugin_directory), an empty
# /tmp, and the shared libraries each binary links (ldd: the pinned Vault is
# built with cgo and links libc and its loader) at the paths ldd names, which
# are the paths the binaries look for them at. Nothing is pulled.
set -euo pipefail
. "$(dirname "$0")/archive.sh"
server="$1" ref="$2" out="$3"
shift 3
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/plugins" "$root/tmp"
chmod 1777 "$root/tmp"
base="$(basename "$server")"
cp "$server" "$root/$base"
chmod 0755 "$root/$base"
for p in "$@"; do
  cp "$p" "$root/plugins/$(basename "$p")"
  chmod 0755 "$root/plugins/$(basename "$p")"
done
# The libraries: ldd's absolute paths (libc.so.6 => /lib/.../libc.so.6, and
# the loader on a line of its own); a static binary has none.
for b in "$server" "$@"; do
  { ldd "$b" 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
tar -C "$root" --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -cf "$work/layer.tar" .
write_archive "$work/layer.tar" "$ref" "$out" "{\"Entrypoint\": [\"/$base\"], \"Env\": [\"PATH=/\", \"TMPDIR=/tmp\", \"HOME=/tmp\"]}"
