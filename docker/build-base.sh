#!/usr/bin/env bash
# Builds the base image the project's Dockerfile starts FROM, out of Debian
# packages alone: no image registry is reachable from these machines, the
# Debian mirror is. Needs root and debootstrap; about two minutes. Does
# nothing when the image already exists (delete it to rebuild).
#   docker/build-base.sh [IMAGE]      default: agentx-base:bookworm
set -euo pipefail
image="${1:-agentx-base:bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image exists"
    exit 0
fi
work="$(mktemp -d /tmp/agentx-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
# The package cache is of no use inside the image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "base image $image built"
