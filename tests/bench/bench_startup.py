#!/usr/bin/env python3
"""Start-up cost of `python -m microlog LABEL script.py` against
`python script.py` for an empty script, a real micrologd reachable:
ML_BENCH_PAIRS interleaved pairs (default 15), median wall-time difference.

The whole cost is counted: importing microlog, starting the run, the
program, and stopping (waiting for the collector's acknowledgements). Both
sides run with compiled bytecode cached (PYTHONPYCACHEPREFIX in a temporary
directory, PYTHONDONTWRITEBYTECODE unset), as after `pip install`: a
development shell that forbids .pyc files would otherwise compile microlog's
sources at every start. A second table splits the cost: import only
(`python -c "import microlog.__main__"`) and MICROLOG_DISABLE=true (import,
no recording).

    PYTHONPATH=build/python MICROLOGD=build/collector/micrologd \\
        .venv/bin/python tests/bench/bench_startup.py
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "workloads"))
from harness import PYTHON, Collector, env_for, spread, write_json  # noqa: E402

PAIRS = int(os.environ.get("ML_BENCH_PAIRS", "15"))


CPU: list = []  # (user + system) CPU seconds of each timed() child, in call order


def timed(args, env) -> float:
    """Wall seconds of one run; its CPU seconds are appended to CPU (less
    blurred than wall time when other jobs load the machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([PYTHON, *args], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def main() -> int:
    collector = Collector()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "empty.py"
        script.write_text("pass\n")
        env = env_for(collector, PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        disabled = dict(env, MICROLOG_DISABLE="true")
        profiled = ["-m", "microlog", "bench-startup", str(script)]
        plain, prof, diff, imp, dis, cpu_diff = [], [], [], [], [], []
        try:
            timed([str(script)], env)  # warm the page cache and the bytecode cache
            timed(profiled, env)
            for i in range(PAIRS):
                a = timed([str(script)], env)
                b = timed(profiled, env)
                cpu_diff.append((CPU[-1] - CPU[-2]) * 1000)
                plain.append(a * 1000)
                prof.append(b * 1000)
                diff.append((b - a) * 1000)
                imp.append((timed(["-c", "import microlog.__main__"], env) - a) * 1000)
                dis.append((timed(profiled, disabled) - a) * 1000)
        finally:
            collector.stop()
    print(f"python script.py                    {spread(plain)} ms")
    print(f"python -m microlog LABEL script.py  {spread(prof)} ms")
    print(f"added by microlog (pairwise)        {spread(diff)} ms   target <= 30 ms")
    print(f"CPU time added (user+system)        {spread(cpu_diff)} ms")
    print("of which (wall, each against the same pair's plain run):")
    print(f"  import microlog.__main__          {spread(imp)} ms")
    print(f"  MICROLOG_DISABLE=true             {spread(dis)} ms")
    write_json("startup", {"plain_ms": plain, "profiled_ms": prof, "added_ms": diff,
                           "import_ms": imp, "disabled_ms": dis, "added_cpu_ms": cpu_diff,
                           "added_median_ms": statistics.median(diff)})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
