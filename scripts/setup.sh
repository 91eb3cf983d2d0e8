#!/usr/bin/env bash
# Installs what a fresh Debian bookworm machine lacks to build and test the engine:
# Mesa ≥ 23 (lavapipe, the software Vulkan driver WebGPU runs on without a GPU) from
# bookworm-backports, the Vulkan loader, Chromium and Firefox ESR (the browser tests), then the
# npm dependencies and the build.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

mesa_major() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+).*/\1/'
}

if [ "$(mesa_major || true)" = "" ] || [ "$(mesa_major)" -lt 23 ] || ! dpkg-query -W libvulkan1 >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    . /etc/os-release
    if [ "${VERSION_CODENAME:-}" = bookworm ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "deb http://deb.debian.org/debian bookworm-backports main" | as_root tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    as_root apt-get update -qq
    target=()
    [ "${VERSION_CODENAME:-}" = bookworm ] && target=(-t bookworm-backports)
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${target[@]}" mesa-vulkan-drivers libvulkan1 >/dev/null
  else
    echo "setup: install Mesa ≥ 23 (mesa-vulkan-drivers) and the Vulkan loader with your package manager" >&2
  fi
fi

# The browser tests (test/browser/) drive Debian's own Chromium and Firefox ESR through
# puppeteer-core with their system executables: no browser is downloaded.
missing_browsers=()
for package in chromium firefox-esr; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing_browsers+=("$package")
done
if [ ${#missing_browsers[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing_browsers[@]}" >/dev/null
  else
    echo "setup: install Chromium and Firefox ESR (the browser tests) with your package manager" >&2
  fi
fi

# onnxruntime-node (a benchmark peer) would download CUDA libraries in its install script: its
# bundled CPU and WebGPU providers are all the benchmark needs.
ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
npm run build
