#!/usr/bin/env bash
# The one list of what Muse needs from Debian. README and CI both run this.
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config
          libgtest-dev libgmock-dev libbenchmark-dev
          libicu-dev
          libcpp-httplib-dev libssl-dev zlib1g-dev libbrotli-dev
          chromium
          libtorch-dev libopenblas0-pthread
          clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node and npm may come from elsewhere (NodeSource ships npm inside nodejs): only when absent.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# The client tests' npm packages (the official openai client, playwright-core), pinned by the lockfile.
npm ci --prefix "$(dirname "$0")/../tests/node" --no-audit --no-fund --loglevel=error
