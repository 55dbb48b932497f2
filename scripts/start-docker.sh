#!/usr/bin/env bash
# Makes sure a Docker Engine with runc and gVisor's runsc answers on the
# default socket: installs Debian's docker.io and runsc when missing (and
# iproute2, with which the tests give a private dockerd a bridge of its own),
# registers runsc, and starts dockerd when `docker info` fails. Idempotent.
#
# runsc needs --network=none on these machines (it cannot set up a network in
# the root network namespace: "cannot run with network enabled in root network
# namespace") and --host-uds so the plugin's Unix socket can cross the
# sandbox.
set -euo pipefail

log_dir="${DOCKERD_LOG_DIR:-/var/log}"

. "$(dirname "$0")/lib.sh"
install_missing dockerd:docker.io runsc:runsc ip:iproute2

daemon_json=/etc/docker/daemon.json
runsc_path="$(command -v runsc)"
want="{\"runtimes\": {\"runsc\": {\"path\": \"$runsc_path\", \"runtimeArgs\": [\"--host-uds=all\", \"--network=none\"]}}}"
changed=false
if [ ! -f "$daemon_json" ] || ! grep -q '"runsc"' "$daemon_json"; then
  mkdir -p /etc/docker
  if [ -s "$daemon_json" ]; then
    echo "$daemon_json exists without runsc; leaving it alone: add runsc by hand" >&2
  else
    echo "$want" > "$daemon_json"
    changed=true
  fi
fi

if docker info >/dev/null 2>&1; then
  if $changed; then
    # Reload daemon.json to pick up the runtime. There may be no dockerd here
    # (an engine reached through DOCKER_HOST) or several (one per socket).
    pids="$(pidof dockerd || true)"
    if [ -n "$pids" ]; then
      kill -HUP $pids
      sleep 1
    else
      echo "no local dockerd to reload: register runsc in the engine's daemon.json by hand" >&2
    fi
  fi
else
  echo "starting dockerd (log: $log_dir/dockerd.log)" >&2
  nohup dockerd >"$log_dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
fi

if ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q runsc; then
  echo "Docker Engine is not answering with the runsc runtime; see $log_dir/dockerd.log" >&2
  exit 1
fi
echo "Docker Engine $(docker version --format '{{.Server.Version}}') is up, runtimes: $(docker info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}')" >&2
