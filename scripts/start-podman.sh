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
for oci in runc runsc; do
  sock="$state/$oci.sock"
  if ping "$sock" "$oci"; then
    continue
  fi
  if [ -f "$state/$oci.pid" ]; then
    kill "$(cat "$state/$oci.pid")" 2>/dev/null || true
  fi
  rm -f "$sock"
  echo "starting a Podman service with default OCI runtime $oci (log: $state/$oci.log)" >&2
  CONTAINERS_CONF="$state/containers-$oci.conf" \
    nohup podman system service --time=0 "unix://$sock" >"$state/$oci.log" 2>&1 &
  echo $! > "$state/$oci.pid"
  for _ in $(seq 1 100); do
    ping "$sock" "$oci" && break
    sleep 0.1
  done
  if ! ping "$sock" "$oci"; then
    echo "the Podman service on $sock did not answer; see $state/$oci.log" >&2
    exit 1
  fi
done
echo "RC_PODMAN_RUNC=unix://$state/runc.sock"
echo "RC_PODMAN_RUNSC=unix://$state/runsc.sock"
