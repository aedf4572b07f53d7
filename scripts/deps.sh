#!/usr/bin/env bash
# Install mmpipe's build dependencies from Debian packages. Idempotent: installs only what is
# missing, and runs `apt-get update` only when something is.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config clang
      libopenblas-dev libstb-dev libavformat-dev libavcodec-dev libswresample-dev libavutil-dev
      libcmocka-dev libcjson-dev libpcre2-dev ffmpeg)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "mmpipe: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
