#!/usr/bin/env python3
"""Start-up cost of `python -m microlog LABEL script.py` against
`python script.py` for an empty script, a real micrologd reachable:
ML_BENCH_PAIRS interleaved pairs (default 15), median wall-time difference.

    PYTHONPATH=build/python MICROLOGD=build/collector/micrologd \\
        .venv/bin/python tests/bench/bench_startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "workloads"))
from harness import PYTHON, Collector, env_for, spread, write_json  # noqa: E402

PAIRS = int(os.environ.get("ML_BENCH_PAIRS", "15"))


def timed(args, env) -> float:
    start = time.perf_counter()
    subprocess.run([PYTHON, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    collector = Collector()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "empty.py"
        script.write_text("pass\n")
        env = env_for(collector)
        plain, prof, diff = [], [], []
        try:
            timed([str(script)], env)  # warm the page cache
            for i in range(PAIRS):
                a = timed([str(script)], env)
                b = timed(["-m", "microlog", "bench-startup", str(script)], env)
                plain.append(a * 1000)
                prof.append(b * 1000)
                diff.append((b - a) * 1000)
        finally:
            collector.stop()
    print(f"python script.py                    {spread(plain)} ms")
    print(f"python -m microlog LABEL script.py  {spread(prof)} ms")
    print(f"added by microlog (pairwise)        {spread(diff)} ms   target <= 30 ms")
    write_json("startup", {"plain_ms": plain, "profiled_ms": prof, "added_ms": diff,
                           "added_median_ms": statistics.median(diff)})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
