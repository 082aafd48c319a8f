#!/usr/bin/env python3
"""Wall-time overhead of profiling, as alternating plain/profiled pairs.

Workloads (tests/bench/workloads): cpu_sympy.py (CPU-bound work in sympy, a
real third-party pure-Python library) and threads_mixed.py (8 threads of
CPU + file I/O + sleeps). For each sampling rate (100 Hz, 1 kHz) it runs
ML_BENCH_PAIRS pairs (default 7), plain and under `python -m microlog` with
a real micrologd, alternating which goes first (ML_BENCH_WORKLOADS=threads
or =sympy runs one workload). Each run times its own work
(interpreter start-up and imports excluded: bench_startup covers those).
Reports the median ratio profiled/plain with its spread, and the sampler's
own figures (its CPU time and GIL-held time per second of run), which the
machine's noise does not blur.

    PYTHONPATH=build/python MICROLOGD=build/collector/micrologd \\
        .venv/bin/python tests/bench/bench_overhead.py
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "workloads"))
from harness import Collector, env_for, run_json, spread, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent / "workloads"
PAIRS = int(os.environ.get("ML_BENCH_PAIRS", "7"))
# ML_BENCH_WORKLOADS=threads (a substring of the names below) runs only those.
ONLY = os.environ.get("ML_BENCH_WORKLOADS", "")
# ML_BENCH_PROFILED_ENV="TRACER_STATUS_DELAY=10 TRACER_MEMORY_DELAY=10": more
# settings for the profiled runs, to tell the parts of the cost apart (the
# example turns status ticks off; TRACER_SAMPLE_DELAY=10 turns sampling off).
EXTRA = dict(kv.split("=", 1) for kv in os.environ.get("ML_BENCH_PROFILED_ENV", "").split())
# About 3 s of work each: shorter runs (they were 0.7 s and 0.15 s) measure
# mostly the first moments of a run (thread start, code objects learnt
# under the GIL) and the machine's noise, not the steady cost of sampling;
# bench_startup measures the start.
WORKLOADS = {"sympy (CPU)": ["cpu_sympy.py", "12"], "8 threads (CPU+I/O)": ["threads_mixed.py", "1000"]}
RATES = {"100 Hz": "0.01", "1 kHz": "0.001"}


def main() -> int:
    collector = Collector()
    results = []
    try:
        for wname, (script, arg) in WORKLOADS.items():
            if ONLY and ONLY not in wname:
                continue
            path = str(HERE / script)
            for rname, delay in RATES.items():
                ratios, cpu, gil, wait, fast, lost, stat = [], [], [], [], [], [], []
                for i in range(PAIRS):
                    plain_env = env_for(None)
                    prof_env = env_for(collector, **{"TRACER_SAMPLE_DELAY": delay, **EXTRA})
                    prof_args = ["-m", "microlog", f"bench-overhead-{script}", path, arg]
                    if i % 2 == 0:
                        plain = run_json([path, arg], plain_env)
                        prof = run_json(prof_args, prof_env)
                    else:
                        prof = run_json(prof_args, prof_env)
                        plain = run_json([path, arg], plain_env)
                    ratios.append(prof["seconds"] / plain["seconds"])
                    s = prof["sampler"]
                    cpu.append(s["cpu_per_s"] * 1000)
                    gil.append(s["gil_held_per_s"] * 1000)
                    wait.append(s["gil_wait_per_s"] * 1000)
                    passes = max(1, s["fast_passes"] + s["gil_passes"])
                    fast.append(s["fast_passes"] / passes)
                    # GIL hand-overs asked only for a status tick's interpreter figures.
                    stat.append(s.get("gil_status", 0) / max(s["elapsed"], 1e-9))
                    # Thread samples a GIL-free pass deferred (unknown code) that neither
                    # the main thread's pending call nor a GIL pass took (0 by design).
                    lost.append(max(0, s.get("deferred", 0) - s.get("learnt_pending", 0)
                                    - s.get("deferred_by_gil", 0)) / passes)
                row = {
                    "workload": wname, "rate": rname, "pairs": PAIRS,
                    "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "sampler_cpu_ms_per_s": statistics.median(cpu),
                    "gil_held_ms_per_s": statistics.median(gil),
                    "gil_wait_ms_per_s": statistics.median(wait),
                    "gil_free_pass_share": statistics.median(fast),
                    "deferred_lost_share": statistics.median(lost),
                    "status_gil_takes_per_s": statistics.median(stat),
                }  # fmt: skip
                results.append(row)
                print(f"{wname:22} {rname:7} ratio {spread(ratios)}  sampler CPU "
                      f"{spread(cpu)} ms/s  GIL held {spread(gil)} ms/s  "
                      f"GIL wait {spread(wait)} ms/s  GIL-free passes {statistics.median(fast):.1%}"
                      f"  deferred samples lost {statistics.median(lost):.1%}"
                      f"  GIL taken for status {statistics.median(stat):.1f}/s",
                      flush=True)  # fmt: skip
    finally:
        collector.stop()
    print("\ntargets: ratio <= 1.01 at 100 Hz, <= 1.05 at 1 kHz (median of interleaved pairs;"
          " the ratio spread is this machine's noise, the sampler's own CPU/GIL figures are not)")
    write_json("overhead", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
