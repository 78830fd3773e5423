#!/usr/bin/env bash
# Make Prometheus and promtool available to the tests: the ones on PATH when both are there, else
# Debian's `prometheus` package, downloaded with apt-get and unpacked into .cache/prometheus (once).
# Unpacking instead of installing keeps the package's service from being started on this machine and
# needs no change to the system; the two binaries are static Go programs and run from anywhere.
#
#   bash deploy/prometheus/install.sh           # install what is missing; prints the bin directory last
#   bash deploy/prometheus/install.sh --check   # exit 1 when no prometheus/promtool can be found
#
# Settings (environment): PROMETHEUS_DIR (<project>/.cache/prometheus).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="${PROMETHEUS_DIR:-$root/.cache/prometheus}"
bin="$dest/usr/bin"

log() { printf 'deploy/prometheus/install.sh: %s\n' "$*" >&2; }

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  dirname "$(command -v prometheus)"
  exit 0
fi
if [ -x "$bin/prometheus" ] && [ -x "$bin/promtool" ] && [ -f "$dest/.complete" ]; then
  echo "$bin"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  log "no prometheus and promtool on PATH or in $bin"
  exit 1
fi
command -v apt-get >/dev/null || { log "apt-get is needed to fetch Debian's prometheus package (or put prometheus and promtool on PATH)"; exit 1; }
start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# `apt-get download` needs the package lists; a fresh machine may not have them yet.
if ! (cd "$work" && apt-get download -q prometheus >/dev/null 2>&1); then
  if [ "$(id -u)" -ne 0 ]; then
    log "apt-get download prometheus failed and only root can run apt-get update; run 'sudo apt-get update' first"
    exit 1
  fi
  log "updating the package lists (apt-get update)"
  apt-get update -qq
  (cd "$work" && apt-get download -q prometheus >/dev/null)
fi
rm -rf "$dest"
mkdir -p "$dest"
dpkg-deb -x "$work"/prometheus_*.deb "$dest"
"$bin/prometheus" --version >/dev/null 2>&1 || { log "the unpacked prometheus does not run"; exit 1; }
touch "$dest/.complete"
log "Prometheus $("$bin/prometheus" --version 2>&1 | awk 'NR == 1 {print $3}') unpacked into $dest in $((SECONDS - start)) s"
echo "$bin"
