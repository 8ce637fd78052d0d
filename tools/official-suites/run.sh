#!/usr/bin/env bash
# Runs the official Engine.IO v4 and Socket.IO v5 protocol test suites against
# `chatlog dev socketio-conformance`. The suites are not part of this
# repository: copy `test-suite/test-suite.js` of socketio/engine.io-protocol
# and of socketio/socket.io-protocol (main branch) into SUITES/engine.io/ and
# SUITES/socket.io/, then run
#
#   tools/official-suites/run.sh SUITES
#
# Needs Debian's nodejs, mocha and node-ws (installed when missing). The suites
# hard-code http://localhost:3000, so port 3000 must be free.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
suites="${1:?usage: tools/official-suites/run.sh SUITES_DIR}"
suites="$(cd "$suites" && pwd)"

if ! command -v mocha >/dev/null || [ ! -d /usr/share/nodejs/ws ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get install -y --no-install-recommends nodejs mocha node-ws
fi

chatlog="${CHATLOG:-}"
if [ -z "$chatlog" ]; then
  (cd "$root" && swift build --product chatlog >&2)
  chatlog="$root/.build/debug/chatlog"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$chatlog" dev socketio-conformance --port 3000 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/server.log" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done

status=0
for suite in engine.io socket.io; do
  if [ ! -f "$suites/$suite/test-suite.js" ]; then
    echo "missing $suites/$suite/test-suite.js" >&2
    status=1
    continue
  fi
  mkdir -p "$work/$suite"
  cp "$suites/$suite"/*.js "$work/$suite/"
  cp "$here/node-imports.js" "$work/$suite/node-imports.js"
  echo '{ "type": "module" }' >"$work/$suite/package.json"
  echo "== $suite protocol suite"
  NODE_PATH=/usr/share/nodejs mocha --exit "$work/$suite/test-suite.js" || status=1
done
exit $status
