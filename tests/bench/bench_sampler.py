#!/usr/bin/env python3
"""Per-sample cost for a 50-frame stack: the median time the sampler spends
walking one thread (copying its frames, validating them, interning the
stack), as the sampler measures it, at 1 kHz over ML_BENCH_REPS runs
(default 5). Side by side: the GIL path (MICROLOG_SAMPLER=gil, the
fallback), whose per-pass cost is its GIL-held time per pass.

    PYTHONPATH=build/python MICROLOGD=build/collector/micrologd \\
        .venv/bin/python tests/bench/bench_sampler.py
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "workloads"))
from harness import Collector, env_for, run_json, spread, write_json  # noqa: E402

DEEP = str(Path(__file__).resolve().parent / "workloads" / "deep_stack.py")
REPS = int(os.environ.get("ML_BENCH_REPS", "5"))


def main() -> int:
    collector = Collector()
    fast, gil = [], []
    try:
        for _ in range(REPS):
            s = run_json(["-m", "microlog", "bench-sampler", DEEP, "2"],
                         env_for(collector, TRACER_SAMPLE_DELAY="0.001"))  # fmt: skip
            fast.append(s["walk_median_us"])
            g = run_json(["-m", "microlog", "bench-sampler-gil", DEEP, "2"],
                         env_for(collector, TRACER_SAMPLE_DELAY="0.001", MICROLOG_SAMPLER="gil"))
            # A GIL pass walks the one (main) thread.
            gil.append(g["gil_held"] / max(1, g["gil_passes"]) * 1e6)
    finally:
        collector.stop()
    print(f"per-sample cost, 50-frame stack (us, median [min..max] of {REPS} runs)")
    print(f"  GIL-free walk (default): {spread(fast)}")
    print(f"  GIL path (fallback):     {spread(gil)}  (GIL held per thread walk)")
    print("target: <= 2 us")
    write_json("sampler", {"gil_free_us": fast, "gil_us": gil,
                           "gil_free_median_us": statistics.median(fast),
                           "gil_median_us": statistics.median(gil)})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
