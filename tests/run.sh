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

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== import layers"
.venv/bin/lint-imports
echo "== pytest"
.venv/bin/pytest "$@"
