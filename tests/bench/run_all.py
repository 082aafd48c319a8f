"""Runs the benchmarks in this folder: every bench_*.py, or those named.

    make bench                                   # all of them but the hour-long soak
    .venv/bin/python tests/bench/run_all.py sampler transport   # a selection

Each benchmark prints its own table (side-by-side comparisons, medians and
spreads of several runs) and writes a JSON summary to build/bench/NAME.json.
Benchmarks never assert on timings; they report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LONG = {"soak"}
ROOT = HERE.parents[1]


def main(argv: list[str]) -> int:
    wanted = set(argv)
    benches = sorted(HERE.glob("bench_*.py"))
    if wanted:
        benches = [b for b in benches if b.stem.removeprefix("bench_") in wanted]
    else:
        # The soak runs for an hour by default: only when asked by name.
        for b in [b for b in benches if b.stem.removeprefix("bench_") in LONG]:
            print(f"skipping {b.stem} (long; run it by name: make bench BENCH={b.stem[6:]})")
            benches.remove(b)
    out = ROOT / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(ROOT / "build" / "python"))
    env.setdefault("MICROLOGD", str(ROOT / "build" / "collector" / "micrologd"))
    env.setdefault("ML_BENCH_OUT", str(out))
    failed = 0
    for bench in benches:
        print(f"==== {bench.stem} ====", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(bench)], env=env, cwd=ROOT)
        print(f"==== {bench.stem}: exit {code}, {time.monotonic() - start:.0f} s ====\n", flush=True)
        failed += code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
