#!/usr/bin/env bash
# Debian roots that hold the CPython interpreters the host does not have,
# for the tests of every supported interpreter (tests/interpreters/run.sh).
#
#   roots.sh up              make or refresh every root (cached; idempotent)
#   roots.sh mount ROOT      bind /proc, /sys, /dev, /dev/pts into ROOT
#   roots.sh umount ROOT     undo it (always before deleting a root)
#   roots.sh pythons         print "ROOT PYTHON NAME" for every interpreter
#
# Roots live in ML_ROOTS_DIR (default /var/cache/microlog/roots), outside the
# repository: a debootstrap takes about a minute and the free-threaded build
# three, so local runs keep them. CI starts from none.
#
#   sid     python3.13, python3.14, python3.15 (Debian unstable)
#   trixie  python3.13t: free-threaded, built from Debian's python3.13 source
#           (the only CPython source the archive serves)
#
# Each root gets what building microlog._native needs (compiler, CMake, the
# -dev packages of libmicrolog's dependencies) and one venv per interpreter
# with the test requirements. The collector is not built here (libh2o-dev is
# not packaged in trixie or sid): run.sh copies the host's build in.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
ROOTS=${ML_ROOTS_DIR:-/var/cache/microlog/roots}
MIRROR=${ML_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
[ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# What the package build and the tests need in every root.
BUILD_PKGS="build-essential cmake pkg-config ca-certificates libnng-dev liblz4-dev libprotobuf-c-dev
  protobuf-c-compiler libcurl4-openssl-dev libjansson-dev libxxhash-dev libssl-dev zlib1g-dev
  libzstd-dev procps openssl"
# What configure needs for a CPython with the modules the tests use.
CPYTHON_PKGS="dpkg-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev uuid-dev libreadline-dev
  libncurses-dev libgdbm-dev xz-utils"

log() { echo "roots: $*" >&2; }

# The interpreters: root, interpreter path inside it, short name.
pythons() {
  cat <<EOF
sid /usr/bin/python3.13 3.13
sid /usr/bin/python3.14 3.14
sid /usr/bin/python3.15 3.15
trixie /opt/py313t/bin/python3.13t 3.13t
EOF
}

do_mount() {
  local r=$1
  for m in proc sys dev dev/pts; do
    mountpoint -q "$r/$m" && continue
    mkdir -p "$r/$m"
    case $m in
      proc) mount -t proc proc "$r/proc" ;;
      sys) mount -t sysfs sys "$r/sys" ;;
      *) mount --bind "/$m" "$r/$m" ;;
    esac
  done
}

do_umount() {
  local r=$1
  for m in dev/pts dev sys proc; do
    if mountpoint -q "$r/$m"; then umount "$r/$m" || umount -l "$r/$m"; fi
  done
}

in_root() { # ROOT COMMAND: a login-free shell in the root, with a plain environment
  local r=$1
  shift
  chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive /bin/bash -c "$*"
}

# A stamp holds the hash of what made the step; the step reruns when that changes.
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

make_root() { # SUITE PACKAGES
  local suite=$1 pkgs=$2 r="$ROOTS/$1"
  mkdir -p "$ROOTS"
  if [ ! -x "$r/usr/bin/apt-get" ]; then
    log "debootstrap $suite (about a minute)"
    command -v debootstrap >/dev/null || apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    rm -rf "$r.partial"
    debootstrap --variant=minbase "$suite" "$r.partial" "$MIRROR" >"$ROOTS/$suite.debootstrap.log" 2>&1 ||
      { tail -20 "$ROOTS/$suite.debootstrap.log" >&2; exit 1; }
    mv "$r.partial" "$r"
  fi
  do_mount "$r"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  # The CA certificates the host trusts (pip reaches PyPI through them).
  mkdir -p "$r/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$r/usr/local/share/ca-certificates/" 2>/dev/null || true
  echo "deb-src $MIRROR $suite main" >"$r/etc/apt/sources.list.d/src.list"
  local want
  want=$(echo "$pkgs" | tr -s ' \n' ' ')
  if ! stamp_ok "$r/.ml-packages" "$want"; then
    log "$suite: installing packages"
    # The unstable suites' Release files on the mirror may be past their
    # Valid-Until date.
    in_root "$r" "apt-get -o Acquire::Check-Valid-Until=false update -qq &&
      apt-get install -y -qq --no-install-recommends $want >/dev/null && update-ca-certificates >/dev/null"
    echo "$want" >"$r/.ml-packages"
  fi
}

build_313t() {
  local r="$ROOTS/trixie"
  [ -x "$r/opt/py313t/bin/python3.13t" ] && return 0
  log "trixie: building the free-threaded python3.13t (about three minutes)"
  in_root "$r" 'set -e; rm -rf /build313t; mkdir -p /build313t && cd /build313t
    apt-get -o Acquire::Check-Valid-Until=false source --download-only -qq python3.13 2>/dev/null
    tar xf python3.13_*.orig.tar.xz && cd Python-3.13.*/
    ./configure -q --disable-gil --prefix=/opt/py313t >/dev/null
    make -s -j"$(nproc)" >/dev/null 2>&1 && make -s altinstall >/dev/null 2>&1
    cd / && rm -rf /build313t'
  [ -x "$r/opt/py313t/bin/python3.13t" ] || { log "python3.13t build failed"; exit 1; }
}

make_venvs() {
  local req
  req=$(sha256sum <"$SRC/tests/interpreters/requirements.txt" | cut -c1-16)
  while read -r root py name; do
    local r="$ROOTS/$root" venv="/opt/venv-$name"
    stamp_ok "$r$venv/.ml-requirements" "$req" && continue
    log "$root: venv for $name"
    mkdir -p "$r/tmp/ml-req"
    cp "$SRC/tests/interpreters/requirements.txt" "$r/tmp/ml-req/"
    in_root "$r" "set -e; rm -rf $venv; $py -m venv $venv
      $venv/bin/python -m pip install -q --upgrade pip
      $venv/bin/python -m pip install -q -r /tmp/ml-req/requirements.txt"
    echo "$req" >"$r$venv/.ml-requirements"
  done < <(pythons)
}

up() {
  make_root sid "$BUILD_PKGS python3.13 python3.13-dev python3.13-venv python3.14 python3.14-dev
    python3.14-venv python3.15 python3.15-dev python3.15-venv"
  make_root trixie "$BUILD_PKGS $CPYTHON_PKGS"
  build_313t
  make_venvs
}

case "${1:-}" in
  up) up ;;
  mount) do_mount "$2" ;;
  umount) do_umount "$2" ;;
  pythons) pythons | while read -r root py name; do echo "$ROOTS/$root $py $name"; done ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
