# archive.sh: sourced by image.sh and vault-image.sh.
#
# write_archive LAYER.tar REF OUT.tar CONFIG: writes a docker-archive (what
# `ctr images import` and `docker load` read) of one layer, named REF, whose
# image config's "config" object is CONFIG (JSON: Entrypoint, Cmd, Env). The
# image ID is the config's digest, so the same layer and CONFIG give the
# same ID.
write_archive() {
  local layer="$1" ref="$2" out="$3" config="$4" dir diff_id arch config_id
  dir="$(mktemp -d)"
  diff_id="$(sha256sum "$layer" | cut -d' ' -f1)"
  case "$(uname -m)" in aarch64) arch=arm64 ;; *) arch=amd64 ;; esac
  printf '{"architecture": "%s", "os": "linux",\n "config": %s,\n "rootfs": {"type": "layers", "diff_ids": ["sha256:%s"]}}\n' \
    "$arch" "$config" "$diff_id" >"$dir/config.json"
  config_id="$(sha256sum "$dir/config.json" | cut -d' ' -f1)"
  mkdir "$dir/image" "$dir/image/$diff_id"
  mv "$dir/config.json" "$dir/image/$config_id.json"
  cp "$layer" "$dir/image/$diff_id/layer.tar"
  echo "[{\"Config\": \"$config_id.json\", \"RepoTags\": [\"$ref\"], \"Layers\": [\"$diff_id/layer.tar\"]}]" >"$dir/image/manifest.json"
  tar -C "$dir/image" --owner=0 --group=0 --numeric-owner -cf "$out" .
  rm -rf "$dir"
}
