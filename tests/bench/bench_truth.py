#!/usr/bin/env python3
"""Are the recorded stacks true? The generator-heavy workload
(workloads/generators.py: json.dump with indent, generator pipelines, a
send() coroutine, an async generator, yield-from chains; first in the main
thread, then in a worker thread) profiled at 500 Hz, ML_BENCH_REPS times
(default 3), read back from the speedscope export (one sample per recorded
sample):

  * rooted: share of a thread's samples whose root frame is the thread's
    first frame (`generators.<module>` for MainThread, the target
    `generators.work` for Worker), and the share rooted at a generator;
  * encoder: share of the thread's working samples inside json.dump
    against the program's own time.thread_time() and time.monotonic()
    shares;
  * the sampler's own figures: retries, walks given to the GIL path,
    samples dropped, median walk of one thread.

    PYTHONPATH=build/python MICROLOGD=build/collector/micrologd \\
        .venv/bin/python tests/bench/bench_truth.py
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent / "workloads"))
from harness import PYTHON, Collector, env_for, write_json  # noqa: E402

WORKLOAD = str(Path(__file__).resolve().parent / "workloads" / "generators.py")
REPS = int(os.environ.get("ML_BENCH_REPS", "3"))
SECONDS = os.environ.get("ML_BENCH_SECONDS", "2")
ROOTS = {"MainThread": "generators.<module>", "Worker": "generators.work"}
GENERATORS = ("_iterencode", "averager", "inner", "middle", "outer", "squares", "evens",
              "numbers", "genexpr", "squares_async")  # fmt: skip


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def one_run(collector: Collector, label: str) -> Dict[str, Any]:
    env = env_for(collector, TRACER_SAMPLE_DELAY="0.002")
    out = subprocess.run([PYTHON, "-m", "microlog", label, WORKLOAD, SECONDS], env=env,
                         capture_output=True, check=True, timeout=300)  # fmt: skip
    own = json.loads(out.stdout.decode().strip().splitlines()[-1])
    run_id = re.search(r"/#(\S+) ┃", out.stderr.decode()).group(1)
    base = collector.url + "/api/v1/runs/" + urllib.parse.quote(run_id, safe="")
    meta = get(base)
    ss = get(base + "/export?format=speedscope")
    names = [f["name"] for f in ss["shared"]["frames"]]
    result: Dict[str, Any] = {"threads": {}, "samples_meta": meta["samples"],
                              "samples_export": sum(len(p["samples"]) for p in ss["profiles"])}
    for p in ss["profiles"]:
        if p["name"] not in ROOTS:
            continue
        stacks = [[names[i] for i in s] for s in p["samples"]]
        n = len(stacks) or 1
        rooted = sum(1 for s in stacks if s and s[0] == ROOTS[p["name"]])
        gen_rooted = sum(1 for s in stacks if s and any(g in s[0] for g in GENERATORS))
        working = [s for s in stacks if "generators.work" in s]
        encoder = sum(1 for s in working if "json.dump" in s)
        t = own[p["name"]]
        result["threads"][p["name"]] = {
            "samples": len(stacks), "rooted": rooted / n, "generator_rooted": gen_rooted / n,
            "encoder_share": encoder / max(1, len(working)),
            "encoder_share_own": t["encoder"] / t["work"] if t["work"] else 0.0,
            "encoder_share_wall": t["encoder_wall"] / t["work_wall"] if t["work_wall"] else 0.0,
        }  # fmt: skip
    log = get(base + "/log")["events"]
    sampler = next((e["message"] for e in log if e["message"].lstrip().startswith("# Sampler")), "")
    result["sampler_section"] = sampler.strip()
    walk = re.search(r"median walk of one thread: ([0-9.]+)", sampler)
    result["walk_median_us"] = float(walk.group(1)) if walk else None
    result["dropped_samples"] = meta.get("dropped_samples", 0)
    return result


def main() -> int:
    collector = Collector()
    runs: List[Dict[str, Any]] = []
    try:
        for i in range(REPS):
            runs.append(one_run(collector, f"bench-truth-{i}"))
    finally:
        collector.stop()
    print(f"generator workload at 500 Hz, {REPS} runs of {SECONDS} s per thread "
          "(median [min..max])")  # fmt: skip
    for thread in ROOTS:
        rows = [r["threads"][thread] for r in runs if thread in r["threads"]]
        if not rows:
            print(f"  {thread}: no samples recorded")
            continue
        for key, what in (("rooted", "rooted at its first frame"),
                          ("generator_rooted", "rooted at a generator"),
                          ("encoder_share", "inside json.dump (profile)"),
                          ("encoder_share_own", "inside json.dump (program's CPU clock)"),
                          ("encoder_share_wall", "inside json.dump (program's wall clock)")):  # fmt: skip
            vals = [100 * r[key] for r in rows]
            print(f"  {thread:10s} {what:40s} {statistics.median(vals):6.2f} % "
                  f"[{min(vals):.2f}..{max(vals):.2f}]")  # fmt: skip
    walks = [r["walk_median_us"] for r in runs if r["walk_median_us"] is not None]
    if walks:
        print(f"  median walk of one thread: {statistics.median(walks):.2f} us "
              f"[{min(walks):.2f}..{max(walks):.2f}]")  # fmt: skip
    else:
        print("  median walk of one thread: not measured (no GIL-free walk in these runs)")
    print("  samples (metadata / speedscope): "
          + ", ".join(f"{r['samples_meta']}/{r['samples_export']}" for r in runs))
    print("  dropped samples: " + ", ".join(str(r["dropped_samples"]) for r in runs))
    print("  sampler, last run: " + runs[-1]["sampler_section"].replace("\n", " ")[:600])
    write_json("truth", runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
