#!/usr/bin/env bash
# Installs everything the suite needs into .venv, then runs lint, format check,
# type checks, the import-layer contracts (pyproject.toml) and the whole
# pytest suite. This is the README's test command and exactly what .ci/run
# calls. PostgreSQL tests run when
# AGENTX_TEST_POSTGRES_URL is set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)
# and are skipped with that reason otherwise. The portal's browser test drives
# Debian's chromium through Playwright (which never downloads a browser here);
# it is installed with apt-get when missing (root, non-interactive).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
if [ ! -x /usr/bin/chromium ]; then
    echo "== apt-get install chromium (for the portal's browser test)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# tests/deploy/test_compose.py runs docker-compose.yml: it needs a Docker
# engine, docker-compose and debootstrap (the base image is built from Debian
# packages). Installed here when missing; the test starts dockerd itself when
# none runs (and stops what it started). A failure to install is not the
# suite's failure: the test then skips and says why.
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null \
    || ! command -v debootstrap >/dev/null; then
    echo "== apt-get install docker.io docker-compose debootstrap (for the compose test)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        docker.io docker-compose debootstrap; } >/dev/null \
        || echo "could not install Docker; the compose test will skip" >&2
fi

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== import layers"
.venv/bin/lint-imports
echo "== pytest"
.venv/bin/pytest "$@"
