#!/usr/bin/env bash
# Regenerate deploy/requirements.lock: every runtime dependency of pyproject.toml (and setuptools,
# the build backend) pinned to one version with its sha256 hashes, for `pip install --require-hashes`
# in deploy/Dockerfile. Run it after changing [project.dependencies]; tests/deploy checks the lock
# still satisfies pyproject.toml.
#
#   bash deploy/lock.sh             # re-resolve, keeping current pins where they still fit
#   bash deploy/lock.sh --upgrade   # move every pin to the newest allowed version
set -euo pipefail

UV_VERSION=0.13.9

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.cache/deploy-tools"
uv="$tools/uv-venv/bin/uv"

if [[ ! -x "$uv" ]] || [[ "$("$uv" --version | awk '{print $2}')" != "$UV_VERSION" ]]; then
  python3 -m venv "$tools/uv-venv"
  "$tools/uv-venv/bin/python" -m pip install --quiet "uv==$UV_VERSION"
fi

cd "$root"
# --universal: one lock for amd64 and arm64 images (markers keep platform-only wheels apart).
# The image is python:3.11, so resolve for exactly that minor version.
echo "setuptools>=69" | "$uv" pip compile pyproject.toml - \
  --universal --python-version 3.11 --generate-hashes --no-header --quiet \
  --custom-compile-command "bash deploy/lock.sh" \
  ${1:+"$1"} \
  --output-file deploy/requirements.lock
echo "deploy/lock.sh: wrote deploy/requirements.lock ($(grep -c '==' deploy/requirements.lock) pins)"
