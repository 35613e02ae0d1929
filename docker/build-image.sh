#!/usr/bin/env bash
# Builds the project's image (agentx:latest) on this machine:
#   1. the base image from Debian packages (docker/build-base.sh; skipped when it exists),
#   2. wheels of the project and every dependency into dist/wheels, with the
#      host's pip (the build itself reaches no package index),
#   3. `docker build` of the Dockerfile, which installs those wheels offline.
#   docker/build-image.sh [IMAGE]      default: agentx:latest
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-agentx:latest}"
python="${PYTHON:-.venv/bin/python}"
docker/build-base.sh
rm -rf dist/wheels
mkdir -p dist
"$python" -m pip wheel --quiet --disable-pip-version-check . -w dist/wheels \
    >dist/pip-wheel.log 2>&1 || { tail -20 dist/pip-wheel.log >&2; exit 1; }
docker build --quiet --tag "$image" . >/dev/null
echo "image $image built"
