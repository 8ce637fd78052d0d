#!/usr/bin/env bash
# Installs what building and testing chatlog needs on Debian, when missing:
# system packages through apt-get (with sudo when not root) and the Python test packages
# pinned in tools/requirements.txt into .venv/. Safe to run again: it only installs what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(liblz4-dev libsqlite3-dev pkg-config python3 python3-venv)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "ensure-deps: installing ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "ensure-deps: swift is not on PATH; install Swift 6.1 or newer (https://swift.org/install)" >&2
    exit 1
fi

if [ "${1:-}" = "--python" ]; then
    stamp=.venv/.requirements-installed
    if [ ! -x .venv/bin/python ] || ! cmp -s tools/requirements.txt "$stamp"; then
        echo "ensure-deps: installing Python test packages into .venv" >&2
        python3 -m venv .venv
        .venv/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.txt
        cp tools/requirements.txt "$stamp"
    fi
fi
