#!/usr/bin/env bash
# Installs the Debian packages Microlog builds, tests and runs with.
# Idempotent: does nothing when everything is present. Needs root (or sudo).
#   deploy/install-deps.sh            build + run dependencies
#   deploy/install-deps.sh --test     also what the test suite needs (chromium, clang)
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates curl
  libuv1-dev libnng-dev libh2o-dev libssl-dev
  libprotobuf-c-dev protobuf-c-compiler liblz4-dev libcurl4-openssl-dev
  libjansson-dev libpcre2-dev libxxhash-dev libcmocka-dev libzstd-dev libexpat1-dev zlib1g-dev
  nodejs npm python3-venv clang-format
)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(chromium)
  # libFuzzer targets (tests/fuzz, make fuzz): clang 14 and its runtimes
  packages+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  # nodejs/npm/python3-venv may come from elsewhere (nvm, pyenv): accept the commands.
  case "$p" in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
    python3-venv) python3 -c 'import venv, ensurepip' 2>/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
