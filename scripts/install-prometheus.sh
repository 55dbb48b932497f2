#!/usr/bin/env bash
# Prints the path of a Prometheus server binary, installing Debian's
# `prometheus` package when there is none (as root; about 15 s). The
# metrics test starts its own on a free 127.0.0.1 port, scraping a hosted
# mount's metrics through Vault with a token; the package's own service is
# not used.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "no prometheus: install Debian's prometheus package (apt-get install prometheus), or run as root" >&2
    exit 1
  fi
  install_missing prometheus:prometheus
fi
command -v prometheus
