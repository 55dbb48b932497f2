#!/usr/bin/env bash
# Makes sure two Podman services answer the Docker Engine API for the tests,
# one per OCI runtime, and that Debian's docker-registry is installed (the
# tests start registries of their own with it). Installs podman and
# docker-registry when missing; idempotent. Prints the two addresses as
# shell assignments:
#   RC_PODMAN_RUNC=unix:///run/rc-podman/runc.sock
#   RC_PODMAN_RUNSC=unix:///run/rc-podman/runsc.sock
#
# One service per OCI runtime because Podman 4.3's Docker-compatible API
# ignores the runtime a container asks for and runs every container under
# the service's default (containers.conf [engine] runtime). Root here lacks
# CAP_SYS_RESOURCE, so Podman's default rlimits (1048576) would make every
# container fail: default_ulimits lowers them. runsc gets the same flags as
# under Docker, through a wrapper (containers.conf takes no runtime args).
#
# The services run in / : a service started in a directory that is later
# removed (a CI clone, a temp dir) still answers `info`, but conmon fails
# every container ("Failed to get working directory", a bare 409 at attach).
# So the health check runs a container on each service, and a service that
# cannot is restarted. The container is localhost/rc-healthcheck:1, built
# here once, without a registry: a static program that exits 0, imported.
set -euo pipefail

state=/run/rc-podman
. "$(dirname "$0")/lib.sh"
install_missing podman:podman docker-registry:docker-registry runsc:runsc docker:docker.io

mkdir -p "$state"
cat > "$state/runsc-podman" <<SH
#!/bin/sh
exec $(command -v runsc) --network=none --host-uds=all "\$@"
SH
chmod 755 "$state/runsc-podman"
for oci in runc runsc; do
  cat > "$state/containers-$oci.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "$oci"
cgroup_manager = "cgroupfs"
events_logger = "file"
[engine.runtimes]
runsc = ["$state/runsc-podman"]
CONF
done

# A service answers, with the default runtime it should have.
ping() { [ "$(timeout 5 docker -H "unix://$1" info --format '{{.DefaultRuntime}}' 2>/dev/null)" = "$2" ]; }

# The health check's image, in the storage the services share; built once.
image=localhost/rc-healthcheck:1
if ! podman image exists "$image" 2>/dev/null; then
  echo "building $image (a static program that exits 0)" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  gobin="$(command -v go || echo /usr/local/go/bin/go)"
  mkdir "$tmp/src" "$tmp/root"
  if [ -x "$gobin" ]; then
    printf 'module healthcheck\n\ngo 1.21\n' > "$tmp/src/go.mod"
    printf 'package main\n\nfunc main() {}\n' > "$tmp/src/main.go"
    (cd "$tmp/src" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS= GOWORK=off \
      "$gobin" build -trimpath -ldflags=-s -o "$tmp/root/true" .) >&2
    cmd='["/true"]'
  elif [ -x /usr/bin/tini-static ]; then
    # tini (docker.io depends on it) exits 0 after printing its version.
    cp /usr/bin/tini-static "$tmp/root/true"
    cmd='["/true", "--version"]'
  else
    echo "cannot build $image: neither go nor /usr/bin/tini-static is here" >&2
    exit 1
  fi
  tar -C "$tmp/root" -cf "$tmp/image.tar" true
  podman import --quiet --change "CMD $cmd" "$tmp/image.tar" "$image" >/dev/null
  rm -rf "$tmp"
  trap - EXIT
fi

# runs sock oci: the service answers and runs a container to exit 0 through
# the Docker-compatible API (create, attach, start, wait, remove), as the
# tests do. Says why not on stderr.
runs() {
  local sock="$1" oci="$2" name="rc-healthcheck-$2" out
  if ! ping "$sock" "$oci"; then
    echo "the Podman service on $sock does not answer with default runtime $oci" >&2
    return 1
  fi
  docker -H "unix://$sock" rm -f "$name" >/dev/null 2>&1 || true
  if ! out="$(timeout 60 docker -H "unix://$sock" run --rm --name "$name" --network none "$image" 2>&1)"; then
    docker -H "unix://$sock" rm -f "$name" >/dev/null 2>&1 || true
    echo "the Podman service on $sock (runtime $oci) answers but cannot run a container: ${out:-no output}" >&2
    return 1
  fi
}

# stop sock: ends the services this script started on sock, by their pids:
# the one in the pid file and any other `podman system service` on sock.
stop() {
  local sock="$1" pidfile="$2" pids=() pid
  if [ -f "$pidfile" ]; then
    pid="$(cat "$pidfile")"
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "system service --time=0 unix://$sock"; then
      pids+=("$pid")
    fi
  fi
  for pid in $(pgrep -xf "podman system service --time=0 unix://$sock" || true); do
    [[ " ${pids[*]} " == *" $pid "* ]] || pids+=("$pid")
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  echo "stopping the Podman service on $sock (pid ${pids[*]})" >&2
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "${pids[@]}" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

for oci in runc runsc; do
  sock="$state/$oci.sock"
  if check="$(runs "$sock" "$oci" 2>&1)"; then
    continue
  fi
  # Silent when nothing listens yet (the first run); else says what failed.
  if [ -S "$sock" ]; then echo "$check" >&2; fi
  stop "$sock" "$state/$oci.pid"
  rm -f "$sock"
  echo "starting a Podman service with default OCI runtime $oci in / (log: $state/$oci.log)" >&2
  (
    cd /
    export CONTAINERS_CONF="$state/containers-$oci.conf"
    exec nohup podman system service --time=0 "unix://$sock" </dev/null >"$state/$oci.log" 2>&1
  ) &
  echo $! > "$state/$oci.pid"
  for _ in $(seq 1 100); do
    ping "$sock" "$oci" && break
    sleep 0.1
  done
  if ! runs "$sock" "$oci"; then
    echo "the Podman service on $sock failed its health check; see $state/$oci.log" >&2
    exit 1
  fi
done
echo "RC_PODMAN_RUNC=unix://$state/runc.sock"
echo "RC_PODMAN_RUNSC=unix://$state/runsc.sock"
