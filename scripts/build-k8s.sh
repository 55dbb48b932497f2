#!/usr/bin/env bash
# Builds the parts of the test Kubernetes node (scripts/start-k8s.sh) and
# prints the directory that holds them all:
#   kube-apiserver, kube-scheduler, kubelet, kubectl  (k8s.io/kubernetes)
#   containerd, containerd-shim-runc-v2, ctr           (containerd 2.x)
#   runsc, containerd-shim-runsc-v1                    (gVisor)
#   rc-k8s-pause, rc-k8s-forward                       (scripts/k8s/node)
# and installs the Debian parts (etcd, the CNI plugins, runc, ip, iptables,
# openssl for the node's certificates).
#
# Each part is built once from the Go module proxy, from a small module of its
# own under scripts/k8s/ that pins its version (their go.mod files are the one
# place the versions are written), and cached outside the work tree by
# version, as scripts/build-vault.sh does. Debian's containerd (1.6) cannot
# drive the current gVisor shim, and Debian's kubectl (1.20) is too old.
# The first build took about 30 minutes on 2 cores shared with a build of
# Vault (Kubernetes about 24 of them, gVisor 4, containerd 3) and needs
# some GB of Go build cache (about 3 for Kubernetes, by the reference's
# count); then this script answers at once.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
install_missing etcd:etcd-server runc:runc ip:iproute2 iptables:iptables nsenter:util-linux openssl:openssl
if [ ! -x /usr/lib/cni/bridge ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq containernetworking-plugins >&2
fi

cache_root="${VAULT_CACHE_DIR:-$(dirname "$(go env GOCACHE)")/vault-plugin-runtime-catalog}"

# version MODULE_DIR MODULE: the version of MODULE that MODULE_DIR's go.mod requires.
version() {
  (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

# build MODULE_DIR OUT_DIR NAME=PACKAGE...: builds each PACKAGE of the module
# in MODULE_DIR into OUT_DIR/NAME, statically, unless OUT_DIR is complete.
# Extra `go build` flags come from the array build_flags.
build() {
  local mod="$1" out="$2" pair
  shift 2
  [ -e "$out/.complete" ] && return 0
  echo "building $(basename "$out") into $out (first time only)" >&2
  local start=$SECONDS
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  for pair in "$@"; do
    (cd "$mod" && CGO_ENABLED=0 go build "${build_flags[@]}" -o "$out.tmp/${pair%%=*}" "${pair#*=}") >&2
  done
  touch "$out.tmp/.complete"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  echo "built $(basename "$out") in $((SECONDS - start)) s" >&2
}

# containerd 2.x with its CRI plugin, the runc shim and ctr.
ctd_mod="$here/k8s/containerd"
ctd_version="$(version "$ctd_mod" github.com/containerd/containerd/v2)"
build_flags=(-tags "no_btrfs no_devmapper" -ldflags "-X github.com/containerd/containerd/v2/version.Version=$ctd_version")
ctd_out="$cache_root/containerd-$ctd_version"
build "$ctd_mod" "$ctd_out" \
  containerd=github.com/containerd/containerd/v2/cmd/containerd \
  containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
  ctr=github.com/containerd/containerd/v2/cmd/ctr

# gVisor's runsc and its containerd shim, from a patched copy of the module.
#
# THE ONE CHANGE TO A THIRD-PARTY COMPONENT, for this test node only: the shim
# sets its own oom_score_adj to -999 after starting and gives up when that
# write fails. Lowering oom_score_adj needs CAP_SYS_RESOURCE, which root lacks
# on the machines this project is tested on (real nodes have it), so every
# runsc pod would fail. The patch drops the error instead of returning it
# (not logged: during `start` the shim's log goes to the stdout that
# containerd reads its address from).
# Nothing else is changed; the built shim is kept apart from any other runsc.
gv_mod="$here/k8s/gvisor"
gv_version="$(version "$gv_mod" gvisor.dev/gvisor)"
gv_out="$cache_root/gvisor-$gv_version-oom-score-ignored"
if [ ! -e "$gv_out/.complete" ]; then
  work="$(mktemp -d)"
  trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
  src="$(cd "$gv_mod" && go mod download -json gvisor.dev/gvisor | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  cp -r "$src" "$work/gvisor"
  chmod -R u+w "$work/gvisor"
  manager="$work/gvisor/pkg/shim/v1/manager.go"
  want='return shim.BootstrapParams{}, fmt.Errorf("failed to set OOM Score on shim: %w", err)'
  grep -qF "$want" "$manager" || { echo "gVisor's shim changed: $manager no longer has the oom_score_adj error to ignore" >&2; exit 1; }
  sed -i "s|$want|_ = err // rc-k8s test node: oom_score_adj needs CAP_SYS_RESOURCE|" "$manager"
  cp "$gv_mod/go.mod" "$gv_mod/go.sum" "$gv_mod/tools.go" "$work/"
  (cd "$work" && go mod edit -replace="gvisor.dev/gvisor=./gvisor")
  build_flags=()
  build "$work" "$gv_out" \
    runsc=gvisor.dev/gvisor/runsc \
    containerd-shim-runsc-v1=gvisor.dev/gvisor/shim
fi

# This project's own small parts of the node: the sandbox (pause) binary and
# the forwarder that carries the host's 127.0.0.1 port to the API server
# inside the node's network namespace. Keyed by the hash of their source.
node_mod="$here/k8s/node"
node_hash="$(cat "$node_mod"/go.mod "$node_mod"/*/*.go | sha256sum | cut -c1-16)"
node_out="$cache_root/rc-k8s-node-$node_hash"
build_flags=()
build "$node_mod" "$node_out" \
  rc-k8s-pause=./pause \
  rc-k8s-forward=./forward

# Kubernetes: kube-apiserver, kube-scheduler, kubelet and kubectl of one release.
k8s_mod="$here/k8s/kubernetes"
k8s_version="$(version "$k8s_mod" k8s.io/kubernetes)"
k8s_minor="${k8s_version#v1.}"
k8s_minor="${k8s_minor%%.*}"
build_flags=(-ldflags "-X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor")
k8s_out="$cache_root/kubernetes-$k8s_version"
build "$k8s_mod" "$k8s_out" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
  kubelet=k8s.io/kubernetes/cmd/kubelet \
  kubectl=k8s.io/kubernetes/cmd/kubectl

# One directory with every part, named by all their versions.
bin="$cache_root/k8s-bin-$k8s_version-containerd-$ctd_version-gvisor-$gv_version-node-$node_hash"
if [ ! -d "$bin" ]; then
  mkdir -p "$bin.tmp"
  for dir in "$k8s_out" "$ctd_out" "$gv_out" "$node_out"; do
    for f in "$dir"/*; do ln -sf "$f" "$bin.tmp/"; done
  done
  rm -rf "$bin"
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
