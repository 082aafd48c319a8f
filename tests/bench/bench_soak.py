#!/usr/bin/env python3
"""Soak: continuous ingest and querying against one real micrologd for
ML_SOAK_SECONDS (default 3600), sampling the collector's RSS every
ML_SOAK_INTERVAL seconds (default 5).

Ingest: ML_SOAK_CLIENTS (default 20) paced clients at a time (loadgen_storage.c,
the real protocol), each a run of 4 threads at 100 Hz lasting
ML_SOAK_RUN_SECONDS (default 30); when a wave ends the next starts, so runs
keep opening, closing and being compacted. Queries: one thread loops over
the run list, the newest run's timeline, flame graph and log, and /metrics,
pausing ML_SOAK_QUERY_PAUSE seconds between rounds (default 0: as fast as
one thread goes; a pause leaves CPU to other work on a shared machine).

Printed and written to $ML_BENCH_OUT: the RSS curve, the flatness after
warm-up (least-squares slope of RSS over the last half of the run, in
KiB per minute, and the relative growth over that half), samples stored vs
acknowledged, query errors. A flat curve (slope ~0) with growing data on
disk is the goal; a steady positive slope is a leak.

    ML_SOAK_SECONDS=600 MICROLOGD=build/collector/micrologd python tests/bench/bench_soak.py

Never asserts on timings; exits 1 when acknowledged samples are missing,
queries failed or the collector died.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import build_loadgen, metrics, proc_stats, start  # noqa: E402

SECONDS = float(os.environ.get("ML_SOAK_SECONDS", "3600"))
INTERVAL = float(os.environ.get("ML_SOAK_INTERVAL", "5"))
CLIENTS = int(os.environ.get("ML_SOAK_CLIENTS", "20"))
RUN_SECONDS = int(os.environ.get("ML_SOAK_RUN_SECONDS", "30"))
QUERY_PAUSE = float(os.environ.get("ML_SOAK_QUERY_PAUSE", "0"))
SAMPLES_PER_BATCH = 400


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t seconds, value) in value per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 60 * sum((t - mt) * (v - mv) for t, v in points) / den if den else 0.0


def querier(http: str, stop: threading.Event, counts: dict) -> None:
    def get(path: str) -> bytes:
        return urllib.request.urlopen(http + path, timeout=60).read()

    while not stop.is_set():
        try:
            runs = json.loads(get("/api/v1/runs"))
            counts["ok"] += 1
            if runs:
                rid = urllib.parse.quote(runs[0]["id"], safe="")
                for ep in (f"timeline?start=0&end={RUN_SECONDS}&width=800", "flamegraph", "log"):
                    get(f"/api/v1/runs/{rid}/{ep}")
                    counts["ok"] += 1
            get("/metrics")
            counts["ok"] += 1
            if QUERY_PAUSE:
                stop.wait(QUERY_PAUSE)
        except (OSError, urllib.error.HTTPError, ValueError) as err:
            counts["errors"] += 1
            counts["last_error"] = repr(err)
            time.sleep(0.5)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ml_bench_soak_") as tmp:
        tmpd = Path(tmp)
        loadgen = build_loadgen(tmpd)
        data = tmpd / "data"
        data.mkdir()
        proc, info = start(data)
        env = dict(os.environ, ML_LOADGEN_PACE_MS="1000", ML_LOADGEN_TIMEOUT_MS="60000")
        stop = threading.Event()
        counts = {"ok": 0, "errors": 0, "last_error": ""}
        q = threading.Thread(target=querier, args=(info["http"], stop, counts))
        q.start()
        acked = waves = failed_waves = 0
        curve: list[dict] = []
        t0 = time.monotonic()
        next_sample = t0
        gen = None
        died = False
        try:
            while True:
                now = time.monotonic()
                if gen is None or gen.poll() is not None:
                    if gen is not None:
                        out, _ = gen.communicate()
                        waves += 1
                        try:
                            acked += json.loads(out)["samples"]
                        except (ValueError, KeyError):
                            pass
                        failed_waves += gen.returncode != 0
                    if now - t0 >= SECONDS:
                        break
                    gen = subprocess.Popen(
                        [str(loadgen), info["ingest"], str(CLIENTS), str(RUN_SECONDS),
                         str(SAMPLES_PER_BATCH)],
                        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                if now >= next_sample:
                    if proc.poll() is not None:
                        died = True
                        break
                    s = proc_stats(proc.pid)
                    disk = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
                    curve.append({"t": round(now - t0, 1), "rss_kib": s["rss"] // 1024,
                                  "cpu_s": s["cpu_s"], "fds": s["fds"], "disk_bytes": disk})
                    print(f"  t={now - t0:7.0f} s  RSS {s['rss'] / 2**20:7.1f} MiB  "
                          f"CPU {s['cpu_s']:7.1f} s  fds {s['fds']:5}  disk {disk / 2**20:8.1f} MiB",
                          flush=True)
                    next_sample += INTERVAL
                time.sleep(0.2)
        finally:
            stop.set()
            q.join()
            if gen is not None and gen.poll() is None:
                gen.kill()
                gen.wait()
        stored = None
        if not died:
            try:
                stored = metrics(info["http"]).get("microlog_ingested_samples_total")
            except OSError:
                stored = None
        proc.terminate()
        proc.wait()
    half = [(p["t"], p["rss_kib"]) for p in curve if p["t"] >= SECONDS / 2]
    slope = slope_per_min(half)
    growth = (half[-1][1] - half[0][1]) / half[0][1] if len(half) > 1 else 0.0
    result = {"seconds": SECONDS, "interval": INTERVAL, "clients": CLIENTS,
              "run_seconds": RUN_SECONDS, "waves": waves, "failed_waves": failed_waves,
              "samples_acked": acked, "samples_stored": stored,
              "queries_ok": counts["ok"], "query_errors": counts["errors"],
              "last_query_error": counts["last_error"], "collector_died": died,
              "rss_slope_last_half_kib_per_min": slope,
              "rss_growth_last_half": growth,
              "rss_first_kib": curve[0]["rss_kib"] if curve else None,
              "rss_max_kib": max(p["rss_kib"] for p in curve) if curve else None,
              "curve": curve}
    print(f"soak: {SECONDS:.0f} s, {CLIENTS} clients at a time, runs of {RUN_SECONDS} s "
          f"(4 threads, 100 Hz), queries in a loop (pause {QUERY_PAUSE:g} s)")
    print(f"  waves {waves} (failed {failed_waves}), samples acked {acked:,}, stored "
          f"{stored if stored is None else f'{stored:,.0f}'}; queries ok {counts['ok']:,}, "
          f"errors {counts['errors']}")
    if curve:
        print(f"  RSS first {curve[0]['rss_kib'] / 1024:.1f} MiB, max "
              f"{result['rss_max_kib'] / 1024:.1f} MiB, last {curve[-1]['rss_kib'] / 1024:.1f} MiB")
    print(f"  flatness after warm-up (last half): slope {slope:+.1f} KiB/min, "
          f"growth {growth * 100:+.2f}%")
    if os.environ.get("ML_BENCH_OUT"):
        out = Path(os.environ["ML_BENCH_OUT"])
        out = out / "soak.json" if out.is_dir() else out
        out.write_text(json.dumps({"soak": result}, indent=2))
    bad = died or counts["errors"] > 0 or stored != acked
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
