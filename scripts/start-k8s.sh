#!/usr/bin/env bash
# Starts a single-node Kubernetes for tests and for a person, and stops it on
# Ctrl-C, SIGTERM or exit, leaving nothing behind. A test node, not a
# production cluster: one etcd, one API server, the scheduler, containerd
# with the CRI plugin (runc by default, gVisor's runsc through the
# RuntimeClass `runsc`) and one kubelet; no kube-controller-manager, no
# kube-proxy, no DNS.
#
#   scripts/start-k8s.sh            # builds the parts once, starts, waits
#
# Once the node is Ready it prints, on stdout, lines a shell can eval:
#   KUBECONFIG=...        admin kubeconfig (https://127.0.0.1:PORT)
#   RC_K8S_NETNS=...      the node's network namespace (/var/run/netns/NAME)
#   RC_K8S_CONTAINERD=... containerd's socket (for `ctr -n k8s.io images import`)
#   RC_K8S_NODE=...       the node's name
#   RC_K8S_READY=1        last line: the node is Ready
# and stays in the foreground until it is signalled (or, with
# RC_K8S_PARENT=PID, until that process is gone).
#
# Everything runs inside a network namespace made here: the node IP
# (10.213.0.2, on a veth pair: the kubelet refuses a loopback node IP and this
# kernel has no dummy device), the pod range 10.214.0.0/24 (a bridge; pods
# have no default route) and every component. Nothing routes out of it. The
# host reaches the API server through a forwarder from 127.0.0.1:PORT, the
# same port the API server listens on inside; to reach pods, enter the
# namespace: nsenter --net=/var/run/netns/NAME (not `ip netns exec`, which
# remounts /sys). All state is in one temporary directory.
#
# Environment: RC_K8S_BIN (the directory scripts/build-k8s.sh prints; built
# when unset), RC_K8S_LOG_DIR (keep the components' logs there, else they go
# with the temporary directory; on a failed start their tails are printed).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" != 0 ]; then
  echo "start-k8s.sh needs root (network namespaces, mounts, cgroups)" >&2
  exit 1
fi
bin="${RC_K8S_BIN:-$("$here/build-k8s.sh")}"
export PATH="$bin:/usr/sbin:/usr/bin:/sbin:/bin"

tmp="$(mktemp -d /tmp/rc-k8s.XXXXXX)"
id="$(echo "${tmp##*.}" | tr 'A-Z' 'a-z')"
name="rc-k8s-$id"             # netns, node, CNI network and cgroup parent
netns="/var/run/netns/$name"
node_ip=10.213.0.2
pod_cidr=10.214.0.0/24
service_cidr=10.215.0.0/24
log_dir="${RC_K8S_LOG_DIR:-$tmp/log}"
mkdir -p "$log_dir" "$tmp/pki"
touch "$tmp/.started"
sock="$tmp/containerd/containerd.sock"
cgroup_root="/$name"
netns_was_mounted=false
mountpoint -q /run/netns && netns_was_mounted=true
# Directories outside $tmp that containerd, its shims and CNI make when
# missing; those missing now are removed at stop if empty.
new_dirs=()
for d in /var/lib/cni/results /var/lib/cni /run/containerd/s /run/containerd; do
  [ -e "$d" ] || new_dirs+=("$d")
done
pids=()
saved_tunables=()
started=false

# spawn NAME CMD...: starts a component in the background, logging to
# NAME.log, inside the node's network namespace only (its mounts, /sys and
# cgroups stay the host's, which the kubelet needs), in a session of its own
# (a Ctrl-C reaches this script only, which stops the components in order).
spawn() {
  local n="$1"
  shift
  setsid nsenter --net="$netns" "$@" >"$log_dir/$n.log" 2>&1 &
  pids+=($!)
}

# under_tmp: the mount points under the temporary directory, deepest first.
under_tmp() {
  awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# node_pids: every process of this node: in its network namespace, in its
# cgroups (pods; runc's and runsc's), or started here.
node_pids() {
  {
    [ -e "$netns" ] && ip netns pids "$name" 2>/dev/null
    local d
    for d in /sys/fs/cgroup/*"$cgroup_root"; do
      [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
    done
    local p
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && echo "$p"; done
  } | sort -u
}

stop() {
  local rc=$?
  trap '' INT TERM
  trap - EXIT
  set +e
  if $started; then echo "stopping the test node $name" >&2; fi
  # The kubelet first, so that it restarts nothing; then everything else.
  local i p left c
  if [ -n "${kubelet_pid:-}" ]; then
    kill -TERM "$kubelet_pid" 2>/dev/null
    for i in $(seq 1 25); do kill -0 "$kubelet_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  # Every task through containerd, so that the shims exit on their own and
  # take their sockets (under /run/containerd/s) with them.
  if [ -S "$sock" ]; then
    for c in $(timeout 5 ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      timeout 10 ctr -a "$sock" -n k8s.io tasks delete --force "$c" >/dev/null 2>&1
    done
  fi
  for i in $(seq 1 50); do
    left="$(node_pids)"
    [ -z "$left" ] && break
    if [ "$i" -lt 20 ]; then kill -TERM $left 2>/dev/null; else kill -KILL $left 2>/dev/null; fi
    sleep 0.2
  done
  [ -n "$left" ] && echo "processes still running: $left" >&2
  wait 2>/dev/null
  for p in $(under_tmp); do umount -l "$p" 2>/dev/null; done
  # The kubelet's cgroups (every v1 hierarchy), deepest first.
  for p in /sys/fs/cgroup/*"$cgroup_root"; do
    [ -d "$p" ] && find "$p" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  [ -e "$netns" ] && ip netns delete "$name"
  # `ip netns add` made /run/netns a mount point; undo it when it was not one
  # and no other namespace lives there now.
  if ! $netns_was_mounted && mountpoint -q /run/netns && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null
  fi
  for p in "${saved_tunables[@]}"; do echo "${p#*=}" >"/proc/sys/${p%%=*}"; done
  # What containerd's CNI library caches about this network outside $tmp.
  rm -rf /var/lib/cni/results/"$name"-* /var/lib/cni/"$name" 2>/dev/null
  # Shim sockets (always under /run/containerd/s) that shims killed or
  # failed on start left: made since this start and listened on by nobody.
  # Not while another node's containerd runs (this one is stopped by now): a
  # shim of its, starting, has made its socket and does not listen yet, and
  # removing it fails that node's container (seen: StartError, "failed to
  # create TTRPC connection ... no such file or directory").
  local listening
  listening="$(ss -xlnH 2>/dev/null | awk '{print $5}')"
  if ! ps -eo args= | grep -q '^containerd --config /tmp/rc-k8s\.'; then
    for p in $(find /run/containerd/s -maxdepth 1 -type s -newer "$tmp/.started" 2>/dev/null); do
      grep -qxF "$p" <<<"$listening" || rm -f "$p"
    done
  fi
  for p in "${new_dirs[@]}"; do rmdir "$p" 2>/dev/null; done
  if [ "$rc" != 0 ] && ! $started; then
    for f in "$log_dir"/*.log; do
      [ -s "$f" ] || continue
      echo "--- last lines of $f" >&2
      tail -n 15 "$f" >&2
    done
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
echo "starting the test node $name in $tmp" >&2

# The network namespace, with the node IP on one end of a veth pair inside it.
ip netns add "$name"
ip -n "$name" link set lo up
ip -n "$name" link add node0 type veth peer name node1
ip -n "$name" addr add "$node_ip/24" dev node0
ip -n "$name" link set node1 up
ip -n "$name" link set node0 up

# The forwarder from the host's 127.0.0.1 to the API server; its port, free
# on the host, is the API server's port inside the namespace too.
coproc forward { exec rc-k8s-forward -netns "$netns" -to 127.0.0.1 2>>"$log_dir/forward.log"; }
pids+=("$forward_PID")
read -r port <&"${forward[0]}"
server="https://127.0.0.1:$port"

# Certificates: one CA for everything, ECDSA keys.
pki="$tmp/pki"
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=$name-ca" -days 30 -out "$pki/ca.crt" 2>/dev/null
# cert NAME SUBJECT [SANS]: a key and a certificate signed by the CA.
cert() {
  local ext="$pki/$1.ext"
  echo "basicConstraints=CA:FALSE" >"$ext"
  echo "keyUsage=critical,digitalSignature,keyEncipherment" >>"$ext"
  if [ -n "${3:-}" ]; then
    echo "extendedKeyUsage=serverAuth,clientAuth" >>"$ext"
    echo "subjectAltName=$3" >>"$ext"
  else
    echo "extendedKeyUsage=clientAuth" >>"$ext"
  fi
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$1.key" 2>/dev/null
  openssl req -new -key "$pki/$1.key" -subj "$2" -out "$pki/$1.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -extfile "$ext" -out "$pki/$1.crt" 2>/dev/null
}
cert apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:$node_ip,IP:${service_cidr%.0/24}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=rc-k8s-admin"
cert apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert scheduler "/CN=system:kube-scheduler"
cert kubelet "/O=system:nodes/CN=system:node:$name"
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/sa.key" 2>/dev/null
openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

# kubeconfig NAME: a kubeconfig for the client certificate NAME.
kubeconfig() {
  local f="$tmp/$1.kubeconfig"
  KUBECONFIG="$f" kubectl config set-cluster "$name" --server="$server" \
    --certificate-authority="$pki/ca.crt" --embed-certs >/dev/null
  KUBECONFIG="$f" kubectl config set-credentials "$1" --client-certificate="$pki/$1.crt" \
    --client-key="$pki/$1.key" --embed-certs >/dev/null
  KUBECONFIG="$f" kubectl config set-context "$name" --cluster="$name" --user="$1" >/dev/null
  KUBECONFIG="$f" kubectl config use-context "$name" >/dev/null
}
kubeconfig admin
kubeconfig scheduler
kubeconfig kubelet
admin="$tmp/admin.kubeconfig"
k() { kubectl --kubeconfig "$admin" "$@"; }

# etcd, on the namespace's loopback.
spawn etcd etcd --name "$name" --data-dir "$tmp/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster "$name=http://127.0.0.1:2380" --listen-metrics-urls "" \
  --quota-backend-bytes 1073741824

spawn kube-apiserver kube-apiserver \
  --etcd-servers http://127.0.0.1:2379 \
  --bind-address 0.0.0.0 --secure-port "$port" --advertise-address "$node_ip" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range "$service_cidr" \
  --kubelet-client-certificate "$pki/apiserver-kubelet.crt" --kubelet-client-key "$pki/apiserver-kubelet.key" \
  --kubelet-preferred-address-types InternalIP \
  --profiling=false --v 1

# containerd with the CRI plugin: runc by default, runsc as the handler
# `runsc`; sandbox image built here; restrict_oom_score_adj because root
# lacks CAP_SYS_RESOURCE here (no container may ask for a lower score than
# containerd's own). NRI and the TCP services are off: nothing else listens.
mkdir -p "$tmp/containerd" "$tmp/cni/net.d" "$tmp/kubelet"
cat >"$tmp/containerd/config.toml" <<EOF
version = 3
imports = []
root = "$tmp/containerd/root"
state = "$tmp/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "localhost/rc-k8s-pause:1"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "$tmp/runc"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]
  runtime_type = "io.containerd.runsc.v1"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc.options]
  TypeUrl = "io.containerd.runsc.v1.options"
  ConfigPath = "$tmp/containerd/runsc.toml"
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "$tmp/cni/net.d"
  use_internal_loopback = true

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
echo "root = \"$tmp/runsc\"" >"$tmp/containerd/runsc.toml"
# The pods' network: a bridge in the node's namespace with the pods' gateway
# address (so that the namespace reaches pods) but no default route in pods.
cat >"$tmp/cni/net.d/10-$name.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$name",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$tmp/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "${pod_cidr%.0/24}.1"}]]
      }
    }
  ]
}
EOF
spawn containerd containerd --config "$tmp/containerd/config.toml"

for _ in $(seq 1 100); do
  [ -S "$sock" ] && ctr -a "$sock" version >/dev/null 2>&1 && break
  sleep 0.2
done
ctr -a "$sock" version >/dev/null

# The sandbox (pause) image, built here and imported: nothing is pulled.
"$here/k8s/image.sh" "$(readlink -f "$bin/rc-k8s-pause")" localhost/rc-k8s-pause:1 "$tmp/pause.tar"
ctr -a "$sock" -n k8s.io images import --local "$tmp/pause.tar" >/dev/null 2>>"$log_dir/ctr.log" ||
  ctr -a "$sock" -n k8s.io images import "$tmp/pause.tar" >/dev/null

for _ in $(seq 1 150); do
  k get --raw /readyz >/dev/null 2>&1 && break
  sleep 0.2
done
k get --raw /readyz >/dev/null

spawn kube-scheduler kube-scheduler --kubeconfig "$tmp/scheduler.kubeconfig" \
  --authentication-kubeconfig "$tmp/scheduler.kubeconfig" --authorization-kubeconfig "$tmp/scheduler.kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port 10259 --v 1

# The kubelet's cgroups go under a parent of this node's own, in every
# hierarchy, so that two nodes (a test's and a person's) do not meet.
for d in /sys/fs/cgroup/*/; do
  case "$d" in */unified/) continue ;; esac
  mkdir -p "$d${cgroup_root#/}"
done
# podLogsDir: the containers' logs stay in this node's directory; in the
# default /var/log/pods, shared by every node of the machine, each kubelet
# removes the other nodes' pod log directories as its own orphans (seen: a
# plugin pod's log gone while it ran, with a second node up).
cat >"$tmp/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: $cgroup_root
failCgroupV1: false
failSwapOn: false
resolvConf: ""
podCIDR: $pod_cidr
podLogsDir: $tmp/pod-logs
maxPods: 50
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 24h
EOF
# The kubelet sets these kernel settings, which are the whole machine's here
# (no VM of its own): they are put back as they were at stop.
tunables=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
for f in "${tunables[@]}"; do saved_tunables+=("$f=$(cat "/proc/sys/$f")"); done
spawn kubelet kubelet --config "$tmp/kubelet/config.yaml" \
  --kubeconfig "$tmp/kubelet.kubeconfig" --hostname-override "$name" --node-ip "$node_ip" \
  --root-dir "$tmp/kubelet" --cert-dir "$tmp/kubelet/pki" --v 1
kubelet_pid="${pids[-1]}"

# What kube-controller-manager would make and pods need: the `default`
# ServiceAccount and the kube-root-ca.crt ConfigMap its token volume mounts,
# in the default namespace. And the RuntimeClass for gVisor.
for _ in $(seq 1 50); do
  k get namespace default >/dev/null 2>&1 && break
  sleep 0.2
done
k create serviceaccount default -n default >/dev/null
k create configmap kube-root-ca.crt -n default --from-file=ca.crt="$pki/ca.crt" >/dev/null
k apply -f - >/dev/null <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: runsc
handler: runsc
EOF

for _ in $(seq 1 300); do
  [ "$(k get node "$name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && break
  kill -0 "$kubelet_pid" 2>/dev/null || { echo "the kubelet exited" >&2; exit 1; }
  sleep 0.5
done
if [ "$(k get node "$name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" != True ]; then
  echo "the node did not become Ready" >&2
  k get node "$name" -o yaml >&2 || true
  exit 1
fi
# What the node lifecycle controller (kube-controller-manager) would do: take
# off the kubelet's not-ready taint, once the node is Ready.
k taint node "$name" node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
started=true

cat >&2 <<EOF
The test node $name is Ready ($((SECONDS - t0)) s). Ctrl-C stops it and removes everything.
  export KUBECONFIG=$admin
  kubectl get nodes                          # $bin/kubectl
  nsenter --net=$netns sh    # a shell in its network namespace, to reach pods ($pod_cidr)
  ctr -a $sock -n k8s.io images import IMAGE.tar   # images: import, nothing is pulled
EOF
echo "KUBECONFIG=$admin"
echo "RC_K8S_NETNS=$netns"
echo "RC_K8S_CONTAINERD=$sock"
echo "RC_K8S_NODE=$name"
echo "RC_K8S_BIN=$bin"
echo "RC_K8S_READY=1"

parent="${RC_K8S_PARENT:-}"
while :; do
  sleep 1 &
  wait $! || true
  if [ -n "$parent" ] && ! kill -0 "$parent" 2>/dev/null; then
    echo "process $parent is gone" >&2
    exit 0
  fi
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "a component of the test node exited (pid $p); see $log_dir" >&2
      exit 1
    fi
  done
done
