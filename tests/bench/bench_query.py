"""Query API speed and memory on an hour-long recording (issue 6).

Generates a run of 1 hour at 100 Hz with 8 threads in the real stored format
(gen_recording.py), starts a real micrologd on it and times, from a client on
loopback, the endpoints the UI calls: timeline windows at width 2000 (whole
run, 10 min, 1 min, 1 s at several offsets), the whole-run flame graph and
the status series. Each figure is the median of REPEAT requests with its
spread (min..max); the first request of the run (which builds the index) is
reported apart. Memory: micrologd's resident set before the run is first
queried, after every query, and its peak, against the recording's size.

Targets (issue 6): timeline <= 50 ms, flamegraph <= 200 ms, status <= 20 ms,
memory <= 2x the recording size. This script reports; it does not assert.

    ML_BENCH_SECONDS=600 python tests/bench/bench_query.py    # a shorter run
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import gen_recording  # noqa: E402

MICROLOGD = os.environ.get("MICROLOGD", str(ROOT / "build" / "collector" / "micrologd"))
SECONDS = int(os.environ.get("ML_BENCH_SECONDS", "3600"))
REPEAT = int(os.environ.get("ML_BENCH_REPEAT", "7"))


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def fetch(url: str) -> tuple[float, int]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        body = resp.read()
        assert resp.status == 200
    return (time.perf_counter() - start) * 1000, len(body)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ml_bench_query_") as tmp:
        data = Path(tmp) / "data"
        t0 = time.monotonic()
        info = gen_recording.generate(data, SECONDS, 8, 100)
        print(f"generated {info['samples']} samples, {info['stacks']} stacks, journal "
              f"{info['journal_bytes'] / 1e6:.1f} MB in {time.monotonic() - t0:.0f} s", flush=True)
        ready = Path(tmp) / "ready.json"
        log = open(Path(tmp) / "micrologd.log", "wb")
        proc = subprocess.Popen([MICROLOGD, "--standalone", "--data-dir", str(data), "--http",
                                 "127.0.0.1:0", "--ready-file", str(ready)], stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            while not ready.exists():
                if proc.poll() is not None:
                    raise SystemExit("micrologd exited: " + (Path(tmp) / "micrologd.log").read_text())
                time.sleep(0.05)
            http = json.loads(ready.read_text())["http"]
            base = http + "/api/v1/runs/" + urllib.parse.quote(info["id"], safe="")
            time.sleep(1.0)
            # The collector compacts the journal into recording.mlr at start
            # (the store's work, not the query's): wait for it, note its
            # peak, then reset the peak so VmHWM measures the query side.
            run_dir = data / "runs" / "local" / "bench-query" / "2026_01_01_00_00_00"
            deadline = time.monotonic() + 300
            while (run_dir / "journal.mlj").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
            peak_startup = rss_kb(proc.pid, "VmHWM")
            rss_before = rss_kb(proc.pid)
            try:
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
                hwm_reset = True
            except OSError:
                hwm_reset = False
            cold_ms, _ = fetch(base + "/timeline?width=2000")
            rss_loaded = rss_kb(proc.pid)
            peak_load = rss_kb(proc.pid, "VmHWM")
            dur = info["duration"]
            cases = [("timeline whole run", "/timeline?width=2000"),
                     ("timeline 10 min", f"/timeline?start={dur / 3:.3f}&end={dur / 3 + 600:.3f}&width=2000"),
                     ("timeline 1 min", f"/timeline?start={dur / 2:.3f}&end={dur / 2 + 60:.3f}&width=2000"),
                     ("timeline 1 s", f"/timeline?start={dur * 0.7:.3f}&end={dur * 0.7 + 1:.3f}&width=2000"),
                     ("timeline 1 s at end", f"/timeline?start={dur - 1:.3f}&end={dur:.3f}&width=2000"),
                     ("timeline 1 thread", "/timeline?width=2000&threads=3"),
                     ("flamegraph whole run", "/flamegraph"),
                     ("flamegraph 1 min", f"/flamegraph?start={dur / 2:.3f}&end={dur / 2 + 60:.3f}"),
                     ("status whole run", "/status?width=2000"),
                     ("status 10 min", f"/status?start={dur / 3:.3f}&end={dur / 3 + 600:.3f}&width=2000")]
            targets = {"timeline": 50, "flamegraph": 200, "status": 20}
            results = []
            print(f"\n{'query':28} {'median ms':>10} {'min..max ms':>16} {'target':>8} {'bytes':>10}")
            for name, path in cases:
                times, size = [], 0
                fetch(base + path)  # warm: pyramids of that zoom level
                for _ in range(REPEAT):
                    ms, size = fetch(base + path)
                    times.append(ms)
                med = statistics.median(times)
                target = targets[name.split()[0]]
                results.append({"query": name, "path": path, "median_ms": med, "min_ms": min(times),
                                "max_ms": max(times), "target_ms": target, "bytes": size})
                print(f"{name:28} {med:10.1f} {min(times):7.1f}..{max(times):7.1f} {'<= ' + str(target):>8} "
                      f"{size:10d}", flush=True)
            rss_after = rss_kb(proc.pid)
            with urllib.request.urlopen(http + "/metrics", timeout=30) as resp:
                metrics = {ln.split()[0]: float(ln.split()[1]) for ln in resp.read().decode().splitlines()
                           if ln.startswith("microlog_query_")}
            peak = rss_kb(proc.pid, "VmHWM")
            rec = run_dir / "recording.mlr"
            rec_bytes = rec.stat().st_size if rec.exists() else None
            journal = info["journal_bytes"]
            served = (rss_after - rss_before) * 1024
            print(f"\nfirst timeline request (loads the run, builds the index): {cold_ms:.0f} ms")
            print(f"{'memory':28} {'MB':>10}")
            print(f"{'journal (recording) size':28} {journal / 1e6:10.1f}")
            if rec_bytes:
                print(f"{'compacted recording.mlr':28} {rec_bytes / 1e6:10.1f}")
            print(f"{'RSS before the first query':28} {rss_before / 1024:10.1f}")
            print(f"{'RSS after loading':28} {rss_loaded / 1024:10.1f}")
            print(f"{'RSS after all queries':28} {rss_after / 1024:10.1f}")
            for k, v in metrics.items():
                print(f"{k.replace('microlog_', '/metrics '):28} {v / 1e6:10.1f}")
            print(f"{'peak RSS at startup (store)':28} {peak_startup / 1024:10.1f}")
            label = "since reset" if hwm_reset else "whole life"
            print(f"{'peak RSS loading (' + label + ')':28} {peak_load / 1024:10.1f}")
            print(f"{'peak RSS queries (' + label + ')':28} {peak / 1024:10.1f}")
            print(f"memory to serve the run (RSS after - before) = {served / 1e6:.1f} MB = "
                  f"{served / journal:.2f}x the journal"
                  + (f", {served / rec_bytes:.2f}x the compacted recording" if rec_bytes else "")
                  + "  (target <= 2x)")
            peak_over = (peak - rss_before) * 1024
            if rec_bytes:
                print(f"peak over baseline while loading and querying = {peak_over / 1e6:.1f} MB = "
                      f"{peak_over / rec_bytes:.2f}x the compacted recording  (target <= 2x)")
            out = {"samples": info["samples"], "stacks": info["stacks"], "journal_bytes": journal,
                   "recording_bytes": rec_bytes, "rss_before_kb": rss_before,
                   "rss_loaded_kb": rss_loaded, "rss_after_kb": rss_after, "peak_kb": peak,
                   "peak_load_kb": peak_load, "peak_startup_kb": peak_startup,
                   "hwm_reset": hwm_reset, "metrics": metrics, "peak_over_bytes": (peak - rss_before) * 1024,
                   "served_bytes": served, "cold_first_timeline_ms": cold_ms, "queries": results,
                   "repeat": REPEAT}
            dest = os.environ.get("ML_BENCH_OUT")
            if dest:
                Path(dest).mkdir(parents=True, exist_ok=True)
                (Path(dest) / "query.json").write_text(json.dumps(out, indent=1))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    import urllib.parse  # noqa: F401  (used above through urllib.parse.quote)
    sys.exit(main())
