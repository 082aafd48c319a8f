#!/usr/bin/env python3
"""Index at 100 000 runs: start-up time and listing latency.

Generates N (default 100 000) finished runs (run.json files, as the store
writes them) in a fresh data dir, then against a real micrologd:

* start-up with no index log (every run.json read, the log written) side
  by side with start-up from the index log (one file read);
* GET /api/v1/runs latency (HTTP round trip included) for regex filters
  over all N runs, exact conditions and paging; target <= 50 ms.

Medians of ML_BENCH_REPS runs with [min..max].

    MICROLOGD=build/collector/micrologd python tests/bench/bench_index.py
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("ML_BUILD_DIR", SRC / "build"))
MICROLOGD = os.environ.get("MICROLOGD", str(BUILD / "collector" / "micrologd"))
REPS = int(os.environ.get("ML_BENCH_REPS", "5"))
NRUNS = int(os.environ.get("ML_BENCH_INDEX_RUNS", "100000"))
LABELS = 200
HOSTS = 50
USERS = 30
TARGET_MS = 50.0


def generate(data: Path, n: int) -> None:
    base_us = 1_767_225_600_000_000  # 2026-01-01
    for i in range(n):
        label = f"job{i % LABELS:03d}"
        t = time.gmtime(base_us // 1_000_000 + i * 7)
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", t)
        d = data / "runs" / "local" / label / stamp
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "id": f"{label}/{stamp}", "label": label, "stamp": stamp, "timestamp": stamp,
            "team": "local", "status": "complete" if i % 10 else "incomplete",
            "host": f"host-{i % HOSTS:02d}", "user": f"user{i % USERS:02d}", "pid": 1000 + i,
            "uid": f"{i:032x}", "argv": ["train.py", "--epochs", "3"],
            "executable": "/usr/bin/python3", "python_version": "3.11.2", "parent_id": "",
            "client_version": "0.1.0", "start_unix_us": base_us + i * 7_000_000,
            "sample_period": 0.05, "status_period": 0.1, "memory_period": 1.0,
            "env": {}, "end_us": 5_000_000, "samples": 100, "logs": 3, "batches": 2,
            "closed": True, "last_seq": 2, "exit_status": 0, "dropped_samples": 0,
            "dropped_logs": 0, "recorded": True, "uploaded": False, "remote": False,
            "stored_bytes": 4000,
        }
        (d / "run.json").write_text(json.dumps(meta))


def start(data: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    ready = data / "ready.json"
    if ready.exists():
        ready.unlink()
    t0 = time.monotonic()
    proc = subprocess.Popen([MICROLOGD, "--data-dir", str(data), "--http", "127.0.0.1:0",
                             "--ready-file", str(ready)],
                            stdout=subprocess.DEVNULL, stderr=open(data / "log", "ab"))
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError((data / "log").read_text())
        time.sleep(0.005)
    elapsed = time.monotonic() - t0
    return proc, json.loads(ready.read_text())["http"], elapsed


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def get(url: str) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        body = resp.read()
        total = int(resp.headers["X-Total-Count"])
    return (time.perf_counter() - t0) * 1000, len(json.loads(body)), total


def stats(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


QUERIES = [
    ("regex, 2% of runs, no limit", "filter=host-07%20user1"),
    ("regex over all, first page", "filter=job0[0-4]&limit=50"),
    ("regex, no match", "filter=nothing-matches-this"),
    ("regex, deep page", "filter=job&offset=50000&limit=50"),
    ("exact label + status", "label=job042&status=complete"),
    ("no condition, first page", "limit=50"),
]


def main() -> int:
    results: dict = {"reps": REPS, "runs": NRUNS, "target_ms": TARGET_MS}
    with tempfile.TemporaryDirectory(prefix="ml_bench_index_") as tmp:
        data = Path(tmp) / "data"
        t0 = time.monotonic()
        generate(data, NRUNS)
        print(f"generated {NRUNS} runs in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        scan, from_log = [], []
        for _ in range(max(2, REPS // 2)):
            (data / "index.jsonl").unlink(missing_ok=True)
            proc, _, secs = start(data)
            scan.append(secs)
            stop(proc)
            proc, _, secs = start(data)
            from_log.append(secs)
            stop(proc)
        results["startup_scan_s"] = stats(scan)
        results["startup_log_s"] = stats(from_log)
        proc, http, _ = start(data)
        try:
            lat: dict = {}
            for name, q in QUERIES:
                get(f"{http}/api/v1/runs?{q}")  # warm: the filter subjects are built once
                ms = []
                for _ in range(REPS * 2):
                    t, n, total = get(f"{http}/api/v1/runs?{q}")
                    ms.append(t)
                lat[name] = {**stats(ms), "returned": n, "total": total, "query": q}
            results["listing_ms"] = lat
        finally:
            stop(proc)

    print(f"index with {NRUNS} runs (real micrologd), median of runs [min..max]:")
    s, l = results["startup_scan_s"], results["startup_log_s"]
    print(f"  start-up, scanning every run.json : {s['median']:7.2f} s [{s['min']:.2f}..{s['max']:.2f}]")
    print(f"  start-up, from index.jsonl        : {l['median']:7.2f} s [{l['min']:.2f}..{l['max']:.2f}]"
          f"  ({s['median'] / l['median']:.1f}x faster)")
    print(f"  GET /api/v1/runs (HTTP round trip), target <= {TARGET_MS:.0f} ms:")
    for name, r in results["listing_ms"].items():
        ok = "ok" if r["median"] <= TARGET_MS else "OVER TARGET"
        print(f"    {name:30s} {r['median']:7.2f} ms [{r['min']:.2f}..{r['max']:.2f}]"
              f"  {r['returned']:>6} of {r['total']:>6} runs  {ok}")
    if os.environ.get("ML_BENCH_OUT"):
        out = Path(os.environ["ML_BENCH_OUT"])
        if out.is_dir():
            out = out / "bench_index.json"
        out.write_text(json.dumps({"index": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
