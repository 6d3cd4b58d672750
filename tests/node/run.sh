#!/usr/bin/env bash
# Runs one of the Node client tests (CTest calls this); exits 77 (skipped) with a message when
# Node or the npm packages (scripts/setup.sh installs them) are missing.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null; then echo "skipped: node is not installed"; exit 77; fi
if [ ! -d node_modules/openai ] || [ ! -d node_modules/playwright-core ]; then
  echo "skipped: run scripts/setup.sh (npm ci in tests/node) first"; exit 77
fi
exec node --test "$@"
