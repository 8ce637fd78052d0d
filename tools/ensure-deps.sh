#!/usr/bin/env bash
# Installs what building and testing chatlog needs on Debian, when missing:
# system packages through apt-get (with sudo when not root) and the Python test packages
# pinned in tools/requirements.txt into .venv/. Safe to run again: it only installs what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(liblz4-dev libsqlite3-dev pkg-config python3 python3-venv)
# The test suite also drives a real browser (tools/tests/test_browser.py).
# The fault tests put nodes in network namespaces and cut them apart (tools/tests/test_faults.py).
# The etcd client's tests (Tests/EtcdTests) start a real etcd.
# The deployment examples (docs/deploy/) are run: nginx in front of nodes, the systemd unit verified.
if [ "${1:-}" = "--python" ]; then packages+=(chromium chromium-driver iproute2 iptables etcd-server etcd-client openssl nginx systemd); fi
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

# The official Socket.IO browser client for the web page (docs/web-page.md). npm is out of
# reach here; PyPI's nicegui wheel carries the official bundle (Socket.IO v4.8.1, MIT). Taken
# from a pinned wheel, checked against its digest, into a git-ignored folder that the build
# copies into the server's resources. Without it the page says how to get it; nothing else fails.
client=Sources/ChatServer/Web/vendor/socket.io.min.js
client_wheel=nicegui==3.18.0
client_sha256=b0e735814f8dcfecd6cdb8a7ce95a297a7e1e5f2727a29e6f5901801d52fa0c5
if [ ! -f "$client" ] || [ "$(sha256sum "$client" | cut -d' ' -f1)" != "$client_sha256" ]; then
    echo "ensure-deps: fetching the Socket.IO browser client from PyPI ($client_wheel)" >&2
    [ -x .venv/bin/pip ] || python3 -m venv .venv
    wheels="$(mktemp -d)"
    if .venv/bin/pip download --quiet --disable-pip-version-check --no-deps -d "$wheels" "$client_wheel" \
        && mkdir -p "$(dirname "$client")" \
        && .venv/bin/python -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("nicegui/static/socket.io.min.js"))' \
            "$wheels"/nicegui-*.whl > "$client.part" \
        && [ "$(sha256sum "$client.part" | cut -d' ' -f1)" = "$client_sha256" ]; then
        mv "$client.part" "$client"
    else
        rm -f "$client.part"
        echo "ensure-deps: could not fetch the Socket.IO browser client; the web page will say so" >&2
    fi
    rm -rf "$wheels"
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
