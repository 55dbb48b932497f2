#!/usr/bin/env bash
# image.sh BINARY NAME:TAG OUT.tar [ARG...]: writes a docker-archive image
# (what `ctr images import` and `docker load` read) holding only BINARY, as
# /BINARY-NAME, FROM scratch, with it as the entrypoint (ARGs as its command).
# The test node's images are made this way: nothing can be pulled.
set -euo pipefail
binary="$1" ref="$2" out="$3"
shift 3
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
base="$(basename "$binary")"
mkdir "$work/root"
cp "$binary" "$work/root/$base"
chmod 0755 "$work/root/$base"
tar -C "$work/root" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" "$base"
diff_id="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
case "$(uname -m)" in aarch64) arch=arm64 ;; *) arch=amd64 ;; esac
cmd=""
for a in "$@"; do cmd="$cmd${cmd:+, }\"$a\""; done
cat >"$work/config.json" <<JSON
{"architecture": "$arch", "os": "linux",
 "config": {"Entrypoint": ["/$base"], "Cmd": [$cmd], "Env": ["PATH=/"]},
 "rootfs": {"type": "layers", "diff_ids": ["sha256:$diff_id"]}}
JSON
config_id="$(sha256sum "$work/config.json" | cut -d' ' -f1)"
mkdir "$work/image"
mv "$work/config.json" "$work/image/$config_id.json"
mkdir "$work/image/$diff_id"
mv "$work/layer.tar" "$work/image/$diff_id/layer.tar"
echo "[{\"Config\": \"$config_id.json\", \"RepoTags\": [\"$ref\"], \"Layers\": [\"$diff_id/layer.tar\"]}]" >"$work/image/manifest.json"
tar -C "$work/image" --owner=0 --group=0 --numeric-owner -cf "$out" .
