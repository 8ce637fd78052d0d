#!/usr/bin/env bash
# Regenerates docs/man/chatlog.1, the man page, from chatlog's own help with
# swift-argument-parser's generate-manual, and checks the shell completions. The page is
# committed (the plugin's tool takes minutes to build the first time); run this after
# changing a command's help. tools/tests/test_manual.py fails while the page lacks an option.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --product chatlog
tool=$(find .build -path '*/debug/generate-manual-tool' -type f -perm -u+x | head -1)
if [ -z "$tool" ]; then
    # The plugin builds the tool (and a release chatlog); its own run is not the one we keep.
    swift package plugin generate-manual >/dev/null || true
    tool=$(find .build -path '*/debug/generate-manual-tool' -type f -perm -u+x | head -1)
fi
[ -n "$tool" ] || { echo "generate-manual: the plugin did not build its tool" >&2; exit 2; }
mkdir -p docs/man
"$tool" .build/debug/chatlog --output-directory docs/man --section 1 --date "$(date -u +%Y-%m-%d)" \
    --authors "the chatlog developers"
echo "wrote docs/man/chatlog.1 (man -l docs/man/chatlog.1)"
