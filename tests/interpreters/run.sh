#!/usr/bin/env bash
# tests/python and the end-to-end tests marked "client" on every CPython the
# host does not have (tests/interpreters/roots.sh lists them), each in its
# Debian root, against the host's collector build.
#
#   tests/interpreters/run.sh BUILD_DIR [NAME ...]   e.g. build 3.14 3.13t
#
# BUILD_DIR is the host's CMake build (its collector/micrologd runs inside
# the roots, with the shared libraries it needs copied beside it). The
# package is built in each root against that interpreter, from the files of
# this checkout (committed or not). Results: BUILD_DIR/interpreters/NAME.xml.
# PYTEST_ARGS adds pytest options (e.g. "-k fork -x").
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:?usage: run.sh BUILD_DIR [NAME ...]}" && pwd)
shift
ONLY=" $* "
ROOTS_SH="$HERE/roots.sh"
OUT="$BUILD/interpreters"
mkdir -p "$OUT"

bash "$ROOTS_SH" up

# The host's collector, runnable in any root with glibc >= the host's: its
# shared libraries (all but glibc's own) copied beside it, found through
# RUNPATHs.
bundle_collector() {
  local dest=$1 bin lib
  rm -rf "$dest"
  mkdir -p "$dest/bin" "$dest/lib"
  for bin in collector/micrologd tests/ml_drive; do
    cp "$BUILD/$bin" "$dest/bin/"
    ldd "$BUILD/$bin" | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
      case $(basename "$lib") in
        libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*|libresolv.so.*) ;;
        *) cp -L "$lib" "$dest/lib/" ;;
      esac
    done
    patchelf --set-rpath '$ORIGIN/../lib' "$dest/bin/$(basename "$bin")"
  done
  # RUNPATH covers an object's own dependencies only: each library gets one too.
  for lib in "$dest"/lib/*; do patchelf --set-rpath '$ORIGIN' "$lib"; done
}

fail=0
while read -r root py name; do
  [ "$ONLY" = "  " ] || [[ "$ONLY" == *" $name "* ]] || continue
  bash "$ROOTS_SH" mount "$root"
  venv=/opt/venv-$name
  # This checkout's files, committed or not (never ignored ones).
  rm -rf "$root/src/microlog"
  mkdir -p "$root/src/microlog"
  (cd "$SRC" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$root/src/microlog"
  bundle_collector "$root/opt/microlog-host"
  echo "interpreters: $name: building the package" >&2
  chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    /bin/bash -c "set -e; cmake -S /src/microlog -B /src/build-$name -DML_BUILD_COLLECTOR=OFF \
      -DML_BUILD_TESTS=OFF -DPython3_EXECUTABLE=$venv/bin/python >/src/build-$name.log 2>&1 &&
      cmake --build /src/build-$name -j$(nproc) >>/src/build-$name.log 2>&1" ||
    { tail -30 "$root/src/build-$name.log" >&2; fail=1; continue; }
  # Child processes record themselves through microlog.pth in site-packages
  # (as an installed package has it); the package itself comes from PYTHONPATH.
  site=$(chroot "$root" $venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  cp "$SRC/pyext/microlog.pth" "$root$site/"
  run_env=(PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8
    PYTHONPATH=/src/build-$name/python MICROLOGD=/opt/microlog-host/bin/micrologd
    ML_DRIVE=/opt/microlog-host/bin/ml_drive
    ML_SOURCE_DIR=/src/microlog ML_BUILD_DIR=/src/build-$name MICROLOG_AUTOSTART=0
    MICROLOG_SPOOL_DIR=/tmp/ml-spool-$name)
  for suite in python e2e; do
    marker=()
    [ $suite = e2e ] && marker=(-m client)
    echo "interpreters: $name: tests/$suite" >&2
    # shellcheck disable=SC2086
    if ! chroot "$root" /usr/bin/env -i "${run_env[@]}" $venv/bin/python -m pytest -q \
        -p no:cacheprovider --junitxml=/src/$name-$suite.xml "${marker[@]}" ${PYTEST_ARGS:-} \
        /src/microlog/tests/$suite; then
      fail=1
    fi
    cp "$root/src/$name-$suite.xml" "$OUT/$name-$suite.xml" 2>/dev/null || true
  done
done < <(bash "$ROOTS_SH" pythons)
exit $fail
