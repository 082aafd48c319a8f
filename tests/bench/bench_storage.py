#!/usr/bin/env python3
"""Ingest into storage: samples/s per collector core and bytes per sample.

Drives a real micrologd with loadgen_storage.c (compiled here with cc
against the build's libml_proto.a): the real envelope + protobuf-c
protocol over nng, every batch fdatasync'd (grouped) before its ack.
Then waits for compaction and reports the recording's bytes per sample
and bytes per second of run at 100 Hz and 20 Hz.

    MICROLOGD=build/collector/micrologd python tests/bench/bench_storage.py
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPS = int(os.environ.get("ML_BENCH_REPS", "5"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import build_loadgen, start  # noqa: E402  (one collector launcher for the benches)


def runs_meta(data: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in data.glob("runs/*/*/*/run.json")]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ml_bench_storage_") as tmp:
        tmpd = Path(tmp)
        loadgen = build_loadgen(tmpd)
        data = tmpd / "data"
        data.mkdir()
        proc, info = start(data)
        results: dict = {"reps": REPS}
        try:
            for clients in (1, 4):
                rates = []
                for _ in range(REPS):
                    out = subprocess.run([str(loadgen), info["ingest"], str(clients), "100", "5000"],
                                         capture_output=True, text=True, check=True)
                    rates.append(json.loads(out.stdout)["samples_per_s"])
                results[f"clients_{clients}"] = {
                    "median_samples_per_s": statistics.median(rates),
                    "min": min(rates), "max": max(rates)}
            for hz in (100, 20):
                # One run of 4 threads, 60 s at hz: 4 * 60 * hz samples.
                n = 4 * 60 * hz
                subprocess.run([str(loadgen), info["ingest"], "1", "1", str(n),
                                str(1_000_000 // hz)], capture_output=True, check=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(
                    m.get("recorded") for m in runs_meta(data)):
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait()
        metas = runs_meta(data)
        big = [m for m in metas if m["samples"] == 500_000]
        results["bytes_per_sample_5000x100"] = statistics.median(
            m["stored_bytes"] / m["samples"] for m in big)
        for hz in (100, 20):
            m = next(m for m in metas if m["samples"] == 4 * 60 * hz)
            results[f"workload_{hz}hz"] = {
                "samples": m["samples"], "bytes": m["stored_bytes"],
                "bytes_per_sample": m["stored_bytes"] / m["samples"],
                "bytes_per_second_of_run": m["stored_bytes"] / 60.0}
    print(f"ingest into storage (micrologd, one loop thread), median of {REPS} runs [min..max]:")
    for clients in (1, 4):
        r = results[f"clients_{clients}"]
        print(f"  {clients} client(s): {r['median_samples_per_s']:>12,.0f} samples/s "
              f"[{r['min']:,.0f} .. {r['max']:,.0f}]   target >= 1,000,000")
    print(f"  stored: {results['bytes_per_sample_5000x100']:.2f} bytes/sample (recording.mlr)")
    for hz in (100, 20):
        r = results[f"workload_{hz}hz"]
        print(f"  {hz:>3} Hz, 4 threads, 60 s: {r['bytes']:,} bytes, {r['bytes_per_sample']:.2f} "
              f"bytes/sample, {r['bytes_per_second_of_run']:,.0f} bytes per second of run")
    if os.environ.get("ML_BENCH_OUT"):
        Path(os.environ["ML_BENCH_OUT"]).write_text(json.dumps({"storage": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
