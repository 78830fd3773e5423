#!/usr/bin/env bash
# Re-vendor the CRDs the deploy tests validate against, from the projects' own Go modules (the Go
# module proxy serves each module's whole tree, CRD YAML included). Both are Apache-2.0.
#   bash tests/deploy/crds/fetch.sh
set -euo pipefail
PROMETHEUS_OPERATOR=v0.85.0
KEDA=v2.18.3

here="$(cd "$(dirname "$0")" && pwd)"
cache="$(mktemp -d)"
trap 'chmod -R u+w "$cache"; rm -rf "$cache"' EXIT
dir() { GOMODCACHE="$cache" GOFLAGS=-mod=mod go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }

po="$(dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR")"
for crd in servicemonitors prometheusrules; do
  cp "$po/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$here/"
done
keda="$(dir "github.com/kedacore/keda/v2@$KEDA")"
for crd in scaledobjects triggerauthentications; do
  cp "$keda/config/crd/bases/keda.sh_$crd.yaml" "$here/"
done
chmod 644 "$here"/*.yaml
echo "vendored prometheus-operator $PROMETHEUS_OPERATOR and KEDA $KEDA CRDs into $here"
