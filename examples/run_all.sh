#!/usr/bin/env bash
# Profiles every example. Needs a collector (make demo starts one) and the
# package (.venv from make build, or PYTHON=...).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-../.venv/bin/python}
"$PYTHON" -m microlog microlog-hello hello.py
"$PYTHON" -m microlog microlog-memory memory.py
"$PYTHON" -m microlog microlog-threads threads.py
"$PYTHON" -m microlog microlog-multiprocessing multiprocessing_pool.py
"$PYTHON" -m microlog microlog-parent parent_child.py
"$PYTHON" start_stop.py
