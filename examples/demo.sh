#!/usr/bin/env bash
# `make demo`: a standalone collector on 127.0.0.1:7777 (started in the
# background if none answers there) and one profiled example.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${MICROLOG_SERVER:-http://localhost:7777}
if ! curl -fsS --max-time 1 "$server/healthz" >/dev/null 2>&1; then
  mkdir -p "$HOME/.microlog"
  nohup build/collector/micrologd --standalone >"$HOME/.microlog/micrologd.log" 2>&1 &
  for _ in $(seq 50); do
    curl -fsS --max-time 1 "$server/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "micrologd: started (pid $!), log in $HOME/.microlog/micrologd.log"
fi
MICROLOG_SERVER=$server .venv/bin/python -m microlog microlog-hello examples/hello.py
echo "Open the URL above in a browser; stop the collector with: make stop-demo"
