#!/usr/bin/env bash
# Install the tools the deploy tests need -- kustomize, helm and a PromQL syntax checker built on
# Prometheus' own parser -- from the Go module proxy into .cache/deploy-tools/bin (gitignored).
#
# Idempotent: a binary already built at the pinned version is kept, so a second run does nothing. Needs Go >= 1.24 on PATH. Prints the bin directory on its last line.
#
#   bash deploy/tools.sh            # install what is missing
#   bash deploy/tools.sh --check    # exit 1 if anything is missing or at another version
set -euo pipefail

KUSTOMIZE_VERSION=v5.8.1
HELM_VERSION=v3.19.5
# promqlcheck pins the Prometheus parser in deploy/promqlcheck/go.mod (github.com/prometheus/prometheus).

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${KAFKA_TWILIO_TOOLS_DIR:-$root/.cache/deploy-tools}"
export GOBIN="$dest/bin"
# Go's own module and build caches are shared on purpose: a fresh clone on a machine that built the
# tools before (CI runs in a new clone each time) rebuilds in seconds instead of minutes.
export GOFLAGS="-mod=mod -modcacherw" GOTOOLCHAIN=local
# Binaries get smaller and link faster without DWARF; we never debug them.
ldflags="-s -w"

check_only=false
[[ "${1:-}" == "--check" ]] && check_only=true

if ! command -v go >/dev/null; then
  echo "deploy/tools.sh: 'go' is not on PATH; install Go 1.24 or newer (the tools are built from source)" >&2
  exit 1
fi

# Version of the main module a Go binary was built from ("" when absent or not a Go binary).
built_version() {
  [[ -x "$1" ]] || return 0
  go version -m "$1" 2>/dev/null | awk '$1 == "mod" {print $3; exit}'
}

missing=0
install() { # name, package, version
  local name=$1 pkg=$2 version=$3
  local have
  have="$(built_version "$GOBIN/$name")"
  if [[ "$have" == "$version" ]]; then
    return 0
  fi
  if $check_only; then
    echo "deploy/tools.sh: $name ${have:-missing}, want $version" >&2
    missing=1
    return 0
  fi
  local start=$SECONDS
  echo "deploy/tools.sh: building $name $version (first time only; a few minutes on 2 cores)" >&2
  mkdir -p "$GOBIN"
  go install -trimpath -ldflags="$ldflags" "$pkg@$version"
  echo "deploy/tools.sh: $name $version built in $((SECONDS - start)) s" >&2
}

install kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
# promqlcheck is our own module (deploy/promqlcheck); `go version -m` reports its version as
# "(devel)", so it is rebuilt only when missing or when its sources are newer than the binary.
if [[ ! -x "$GOBIN/promqlcheck" ]] || [[ -n "$(find "$root/deploy/promqlcheck" -newer "$GOBIN/promqlcheck" -type f)" ]]; then
  if $check_only; then
    echo "deploy/tools.sh: promqlcheck missing or stale" >&2
    missing=1
  else
    start=$SECONDS
    echo "deploy/tools.sh: building promqlcheck (deploy/promqlcheck)" >&2
    mkdir -p "$GOBIN"
    (cd "$root/deploy/promqlcheck" && go build -trimpath -ldflags="$ldflags" -o "$GOBIN/promqlcheck" .)
    echo "deploy/tools.sh: promqlcheck built in $((SECONDS - start)) s" >&2
  fi
fi

if $check_only && ((missing)); then
  exit 1
fi
echo "$GOBIN"
