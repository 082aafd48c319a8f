#!/usr/bin/env python3
"""What profiling adds to operations that raise audit events: open(), id()
and copy.deepcopy (an id() per object), timed inside the program (best of
7 each, workloads/audited_ops.py), in alternating runs: plain, under
`python -m microlog` (a real micrologd), and plain with a trivial audit hook
written in Python, for comparison.

Microlog notes every open() of a run for its end-of-run report of files
never closed, with an audit hook written in C (pyext/src/openfiles.c). Once
any hook exists CPython builds the arguments of every audit event, which
costs tens of nanoseconds an event; a hook in Python also runs a function
call for each. ML_BENCH_PAIRS runs of each (default 7), medians with
spreads.

    PYTHONPATH=build/python MICROLOGD=build/collector/micrologd \\
        .venv/bin/python tests/bench/bench_hooks.py
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "workloads"))
from harness import Collector, env_for, run_json, spread, write_json  # noqa: E402

SCRIPT = str(Path(__file__).resolve().parent / "workloads" / "audited_ops.py")
PAIRS = int(os.environ.get("ML_BENCH_PAIRS", "7"))
KEYS = {"open_us": "open() us", "id_ns": "id() ns", "deepcopy_ms": "deepcopy ms"}


def main() -> int:
    collector = Collector()
    runs = {"plain": [], "microlog": [], "python hook": []}
    try:
        for i in range(PAIRS):
            order = ["plain", "microlog", "python hook"]
            for side in order[i % 3:] + order[:i % 3]:
                if side == "plain":
                    runs[side].append(run_json([SCRIPT], env_for(None)))
                elif side == "microlog":
                    runs[side].append(run_json(["-m", "microlog", "bench-hooks", SCRIPT],
                                               env_for(collector)))  # fmt: skip
                else:
                    runs[side].append(run_json([SCRIPT, "--python-hook"], env_for(None)))
    finally:
        collector.stop()
    rows = {}
    for key, name in KEYS.items():
        plain = statistics.median(r[key] for r in runs["plain"])
        cols = []
        for side in runs:
            values = [r[key] for r in runs[side]]
            ratio = statistics.median(values) / plain
            rows.setdefault(side, {})[key] = {"values": values, "ratio": ratio}
            cols.append(f"{side} {spread(values)} (x{ratio:.2f})")
        print(f"{name:12} " + "   ".join(cols), flush=True)
    print(f"({PAIRS} runs of each, medians [min..max]; x = median / plain median)")
    write_json("hooks", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
