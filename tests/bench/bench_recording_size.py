#!/usr/bin/env python3
"""Recording size: stored bytes per second of run at 20 Hz and 100 Hz for
the same workload (cpu_sympy.py), ours against the original Microlog.

Ours: the run's recording.mlr in a real micrologd's data directory after
compaction (the collector compacts a run's journal into recording.mlr once
the run is closed; we wait for it). The original: `micrologai` from PyPI
in its own virtual environment (build/bench-orig-venv, made on first use
with `pip install micrologai sympy`), its storage pointed at a temporary
HOME (it saves to ~/microlog when no S3 bucket is configured), the .zip it
writes. Bytes per second = file size / wall time of the whole process, the
same clock for both, so a slower side is not credited with a smaller
file. Both sides run the same workload at the same rate; the runs are long
(ML_BENCH_ROUNDS sympy rounds, default 80: about 20 s unprofiled) so the
per-run tables (strings, frames, stacks) weigh as they do in real runs, not
as in a toy. ML_BENCH_REPS runs per side and rate (default 3), medians with
spread; the target is ours/original <= 0.25.

Also printed, for both sides: the samples actually recorded per second of
run and the bytes per recorded sample. Ours: the run's sample count
(run.json `samples`, every thread). The original keeps no samples, only
calls that start and end at sample times: its recording is unpickled (in
its own venv) and the distinct start and end times of its calls (ms, as it
rounds them) are counted, the samples at which it saw a stack change (a
lower bound: samples that changed nothing leave no time). Its sampler
sleeps the configured delay after each sample, so it records fewer samples
than the rate asks for; the target compares bytes per second at the same
configured rate.

The rate reaches the original as MICROLOG_SAMPLE_DELAY, the variable the
PyPI package reads (its README says TRACER_SAMPLE_DELAY; both are set).

    PYTHONPATH=build/python MICROLOGD=build/collector/micrologd \\
        .venv/bin/python tests/bench/bench_recording_size.py
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

sys.path.insert(0, str(Path(__file__).resolve().parent / "workloads"))
from harness import BUILD, PYTHON, Collector, env_for, spread, write_json  # noqa: E402

WORKLOAD = str(Path(__file__).resolve().parent / "workloads" / "cpu_sympy.py")
REPS = int(os.environ.get("ML_BENCH_REPS", "3"))
ROUNDS = os.environ.get("ML_BENCH_ROUNDS", "80")
TARGET = 0.25
RATES = {"20 Hz": "0.05", "100 Hz": "0.01"}
ORIG_VENV = Path(os.environ.get("ML_BENCH_ORIG_VENV", BUILD / "bench-orig-venv"))


def orig_python() -> str:
    """The original Microlog's interpreter, installing it on first use."""
    python = ORIG_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([PYTHON, "-m", "venv", str(ORIG_VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import microlog.tracer, sympy"],
                           capture_output=True, check=False)  # fmt: skip
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "micrologai", "sympy"],
                       check=True)  # fmt: skip
    return str(python)


# Run by the original's interpreter: its recording is zstd(pickle(Recording)).
COUNT_ORIG = """
import json, pickle, sys, zstd
rec = pickle.loads(zstd.decompress(open(sys.argv[1], "rb").read()))
times = set()
for c in rec.calls:
    times.add(round(c.when, 3))
    times.add(round(c.when + c.duration, 3))
print(json.dumps({"calls": len(rec.calls), "samples": len(times)}))
"""


def timed(args, env, cwd=None) -> float:
    start = time.perf_counter()
    out = subprocess.run(args, env=env, cwd=cwd, capture_output=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{args} exited {out.returncode}: {out.stderr.decode()[-2000:]}")
    return time.perf_counter() - start


def original_run(python: str, delay: str) -> tuple:
    """(bytes, samples, seconds) of the original's .zip."""
    with tempfile.TemporaryDirectory(prefix="ml-orig-") as home:
        # The PyPI package reads MICROLOG_SAMPLE_DELAY (its config.py); the
        # README's TRACER_SAMPLE_DELAY is set too, for any version that
        # reads that spelling. Told only the latter it samples at its
        # default 20 Hz whatever the rate asked.
        env = env_for(None, HOME=home, TRACER_SAMPLE_DELAY=delay, MICROLOG_SAMPLE_DELAY=delay)
        # Our build's python/ on PYTHONPATH would shadow the original's package.
        env.pop("PYTHONPATH", None)
        seconds = timed([python, "-m", "microlog", "size-orig", WORKLOAD, ROUNDS], env, cwd=home)
        zips = list(Path(home, "microlog").rglob("*.zip"))
        if len(zips) != 1:
            raise RuntimeError(f"expected one recording, found {zips}")
        out = subprocess.run([python, "-c", COUNT_ORIG, str(zips[0])], env=env,
                             capture_output=True, check=True, timeout=300)  # fmt: skip
        samples = json.loads(out.stdout.decode().strip().splitlines()[-1])["samples"]
        return zips[0].stat().st_size, samples, seconds


def our_run(collector: Collector, delay: str, label: str) -> tuple:
    """(bytes, samples, seconds) of our recording.mlr, once compacted."""
    env = env_for(collector, TRACER_SAMPLE_DELAY=delay)
    seconds = timed([PYTHON, "-m", "microlog", label, WORKLOAD, ROUNDS], env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for run_json in collector.data.rglob(f"runs/*/{label}/*/run.json"):
            info = json.loads(run_json.read_text())
            recording = run_json.parent / "recording.mlr"
            if info.get("status") == "complete" and info.get("stored_bytes") and recording.exists():
                return recording.stat().st_size, int(info["samples"]), seconds
        time.sleep(0.2)
    raise RuntimeError(f"run {label} was not compacted within 60 s")


def main() -> int:
    python = orig_python()
    collector = Collector()
    rows = []
    try:
        for rname, delay in RATES.items():
            o_runs, u_runs = [], []
            for i in range(REPS):
                o_runs.append(original_run(python, delay))
                u_runs.append(our_run(collector, delay, f"size-{rname.replace(' ', '')}-{i}"))
            orig = [b / s for b, _, s in o_runs]
            ours = [b / s for b, _, s in u_runs]
            ratio = statistics.median(ours) / statistics.median(orig)
            rows.append({"rate": rname, "original_bytes_per_s": orig, "ours_bytes_per_s": ours,
                         "original_runs": o_runs, "ours_runs": u_runs,
                         "ratio": ratio, "target": TARGET, "met": ratio <= TARGET})  # fmt: skip
            print(f"{rname:7} original {spread(orig)} B/s   ours {spread(ours)} B/s   "
                  f"ours/original {ratio:.3f} (target <= {TARGET}: "
                  f"{'met' if ratio <= TARGET else 'NOT met'})", flush=True)  # fmt: skip
            for side, runs in (("original", o_runs), ("ours", u_runs)):
                rate = [n / s for _, n, s in runs]
                per = [b / max(n, 1) for b, n, _ in runs]
                print(f"        {side:8} recorded {spread(rate)} samples/s   "
                      f"{spread(per)} B/sample", flush=True)  # fmt: skip
    finally:
        collector.stop()
    print(f"(cpu_sympy.py {ROUNDS} rounds, {REPS} runs each, medians; target: ours/original <= {TARGET})")
    write_json("recording_size", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
