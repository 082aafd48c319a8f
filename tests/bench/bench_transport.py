"""Client -> collector transport: libmicrolog (ml_drive, a C program) sends a
run as fast as it can record it to a real micrologd, over loopback TCP and
over ipc. Reports, as medians of several runs with their spread (min-max):
samples per second delivered and acknowledged (recording start to the
CloseRun acknowledgement), the ack latency p50/p99 of the batch requests,
and the client's CPU time per 1000 samples (recording plus the sender
thread). Writes $ML_BENCH_OUT/transport.json.

    .venv/bin/python tests/bench/bench_transport.py [--samples N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
BUILD = Path(os.environ.get("ML_BUILD_DIR", ROOT / "build"))
ML_DRIVE = os.environ.get("ML_DRIVE", str(BUILD / "tests" / "ml_drive"))
os.environ.setdefault("MICROLOGD", str(BUILD / "collector" / "micrologd"))

from conftest import start_collector  # noqa: E402


def one_run(http: str, samples: int, tmp: Path) -> dict:
    counts = tmp / f"counts-{time.monotonic_ns()}.jsonl"
    env = dict(os.environ, MICROLOG_DEBUG_COUNTS=str(counts), MICROLOG_AUTOSTART="0",
               MICROLOG_SPOOL_DIR=str(tmp / "spool"))
    out = subprocess.run([ML_DRIVE, "--server", http, "--samples", str(samples), "--rate", "0",
                          "--log-every", "100", "--status-every", "100", "--close-timeout",
                          "60000"], env=env, capture_output=True, text=True, check=True)
    client = json.loads(out.stdout.splitlines()[-1])
    c = json.loads(counts.read_text().splitlines()[0])
    assert client["delivered"] and c["delivered"], (client, c, out.stderr)
    return {
        "samples_per_s": samples / client["elapsed_s"],
        "ack_p50_ms": c["ack_p50_us"] / 1000,
        "ack_p99_ms": c["ack_p99_us"] / 1000,
        "cpu_ms_per_1000": client["cpu_s"] * 1000 / (samples / 1000),
        "batches": c["batches_acked"],
    }


def summarize(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=300000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ml-bench-transport-") as d:
        tmp = Path(d)
        for name, ingest in (("tcp", "tcp://127.0.0.1:0"), ("ipc", f"ipc://{tmp}/ingest.ipc")):
            c = start_collector(tmp / f"data-{name}", "--ingest", ingest)
            try:
                one_run(c.http, 10000, tmp)  # warm-up
                runs = [one_run(c.http, args.samples, tmp) for _ in range(args.runs)]
            finally:
                c.stop()
            results[name] = {k: summarize([r[k] for r in runs])
                             for k in ("samples_per_s", "ack_p50_ms", "ack_p99_ms",
                                       "cpu_ms_per_1000", "batches")}
    print(f"transport: {args.samples} samples per run (+ a log line and a status tick every "
          f"100), {args.runs} runs each; median [min-max]")
    print(f"{'metric':<34}{'loopback TCP':>36}{'ipc':>36}")
    rows = (("samples/s delivered+acked", "samples_per_s", "{:,.0f}"),
            ("ack latency p50 (ms)", "ack_p50_ms", "{:.2f}"),
            ("ack latency p99 (ms)", "ack_p99_ms", "{:.2f}"),
            ("client CPU per 1000 samples (ms)", "cpu_ms_per_1000", "{:.3f}"),
            ("batches per run", "batches", "{:.0f}"))
    for label, key, fmt in rows:
        cells = []
        for name in ("tcp", "ipc"):
            s = results[name][key]
            cells.append(f"{fmt.format(s['median'])} [{fmt.format(s['min'])}-{fmt.format(s['max'])}]")
        print(f"{label:<34}{cells[0]:>36}{cells[1]:>36}")
    out = os.environ.get("ML_BENCH_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "transport.json").write_text(json.dumps(
            {"samples": args.samples, "runs": args.runs, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
