"""Known programs with known answers, recorded through a real micrologd.

Each program is profiled with `python -m microlog` as a user would, and the
answer is read back from the collector's HTTP API. The GIL-free sampler and
the GIL path (MICROLOG_SAMPLER=gil, the fallback) must give the same answers.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
from typing import Any, Dict, Iterator, List

import pytest

from conftest import Collector, child_env

MODES = ["auto", "gil"]
LAST_STDOUT: List[str] = []  # stdout lines of the last profiled program


def profile(collector: Collector, runner, source: str, label: str, **env: str) -> str:
    """Runs source under microlog; returns the run id shown in the box."""
    script = runner.script(source, name=f"{label}.py")
    environ = child_env(server=collector.url, **{"TRACER_SAMPLE_DELAY": "0.005", **env})
    result = runner.run(["-m", "microlog", label, str(script)], env=environ, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    LAST_STDOUT[:] = result.stdout.decode().splitlines() or [""]
    box = re.search(r"┃ Microlog: \S+/#(\S+) ┃", result.stderr.decode())
    assert box, result.stderr.decode()
    return box.group(1)


def nodes(node: Dict[str, Any], depth: int = 0) -> Iterator[tuple[int, Dict[str, Any]]]:
    yield depth, node
    for child in node.get("children", []):
        yield from nodes(child, depth + 1)


def deepest_chain(node: Dict[str, Any], name: str) -> int:
    """Longest run of consecutive `name` frames from node downwards."""
    best = 0
    for child in node.get("children", []):
        if child["name"] == name:
            best = max(best, 1 + deepest_chain_strict(child, name))
        best = max(best, deepest_chain(child, name))
    return best


def deepest_chain_strict(node: Dict[str, Any], name: str) -> int:
    return max(
        (1 + deepest_chain_strict(c, name) for c in node.get("children", []) if c["name"] == name),
        default=0,
    )


RECURSION = """
import time

def down(n):
    if n == 0:
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            pass
        return
    down(n - 1)

down(40)
"""


@pytest.mark.parametrize("mode", MODES)
def test_recursion_shows_its_depth(collector: Collector, runner, mode: str):
    run = profile(collector, runner, RECURSION, f"recursion-{mode}", MICROLOG_SAMPLER=mode)
    flame = collector.get(collector.run_path(run, "flamegraph"))
    # down(40) .. down(0): 41 frames, each named after the script.
    assert deepest_chain(flame["root"], f"recursion-{mode}.down") == 41


THREADS = """
import threading, time

def work():
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        pass

worker = threading.Thread(target=work, name="Worker")
worker.start()
worker.join()
time.sleep(0.4)
"""


@pytest.mark.parametrize("mode", MODES)
def test_threads_that_start_and_end_appear_and_end(collector: Collector, runner, mode: str):
    run = profile(collector, runner, THREADS, f"threads-{mode}", MICROLOG_SAMPLER=mode)
    threads = {t["name"]: t for t in collector.get(collector.run_path(run))["threads"]}
    assert {"MainThread", "Worker"} <= set(threads)
    worker, main = threads["Worker"], threads["MainThread"]
    assert worker["samples"] > 0
    assert worker["ended"] is not None
    # The worker ended while the main thread went on sleeping for 0.4 s.
    assert main["ended"] is None or worker["ended"] < main["ended"]


SAMPLER_COST = """
import time
from microlog import _native

end = time.monotonic() + 0.5
while time.monotonic() < end:
    pass
stats = _native.sampler_stats()
print(stats["mode"], stats["fast_passes"], stats["gil_passes"])
"""


def test_steady_state_sampling_needs_no_gil(collector: Collector, runner):
    script = runner.script(SAMPLER_COST, name="cost.py")
    env = child_env(server=collector.url, TRACER_SAMPLE_DELAY="0.001")
    result = runner.run(["-m", "microlog", "cost", str(script)], env=env)
    assert result.returncode == 0, result.stderr.decode()
    mode, fast, gil = result.stdout.decode().split()
    assert mode == "gil-free"
    # Only the first passes (new code objects, new threads) take the GIL.
    assert int(fast) > 10 * max(1, int(gil))


STATUS = """
import time
wall0, cpu0 = time.monotonic(), time.process_time()
while time.monotonic() < wall0 + 0.8:
    pass
# The share of a core this busy loop really got (less than 100 on a loaded machine).
print((time.process_time() - cpu0) / (time.monotonic() - wall0) * 100)
time.sleep(0.8)
"""


def test_cpu_percent_of_busy_loop_and_sleep(collector: Collector, runner):
    run = profile(collector, runner, STATUS, "cpu-percent", TRACER_STATUS_DELAY="0.1")
    share = float(LAST_STDOUT[-1])
    try:
        series = collector.get(collector.run_path(run, "status") + "?width=1000")["series"]
    except urllib.error.HTTPError as error:
        if error.code == 404:
            pytest.skip("the collector has no status endpoint yet (GET .../status answered 404)")
        raise
    points = list(zip(series["time"], series["cpu"]))
    start = points[0][0]
    busy = [cpu for t, cpu in points if 0.2 <= t - start <= 0.7]
    idle = [cpu for t, cpu in points if 1.0 <= t - start <= 1.5]
    assert busy and idle
    # Near 100 on an idle machine; on a loaded one, near what the loop got.
    assert abs(sorted(busy)[len(busy) // 2] - share) < 25
    assert sorted(busy)[len(busy) // 2] > 30
    assert sorted(idle)[len(idle) // 2] < 15


STATUS_WHILE_JOINING = """
import threading, time
from microlog import _native

kept = []

def grow():
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        kept.append([object() for _ in range(100)])

workers = [threading.Thread(target=grow) for _ in range(2)]
for w in workers:
    w.start()
for w in workers:
    w.join()  # the main thread serves no pending call meanwhile
stats = _native.sampler_stats()
print(stats["gil_status"], stats["elapsed"])
"""


def test_status_ticks_while_the_main_thread_joins(collector: Collector, runner):
    """The main thread blocked in join() cannot measure the interpreter part
    of status ticks (its pending call); the sampler then takes the GIL for it
    at most once a second, not at every tick, and the ticks still follow the
    objects the program makes."""
    run = profile(collector, runner, STATUS_WHILE_JOINING, "status-join",
                  TRACER_STATUS_DELAY="0.1", TRACER_SAMPLE_DELAY="0.01")  # fmt: skip
    gil_status, elapsed = LAST_STDOUT[-1].split()
    assert int(gil_status) <= float(elapsed) + 2, LAST_STDOUT
    series = collector.get(collector.run_path(run, "status") + "?width=1000")["series"]
    points = [(t, n) for t, n in zip(series["time"], series["objects"]) if n]
    assert len(points) >= 20, series
    # The objects kept by the workers keep growing through the join.
    start = points[0][0]
    early = [n for t, n in points if t - start < 1.0]
    late = [n for t, n in points if t - start > 2.0]
    assert early and late and max(late) > max(early) + 100_000, points


SLEEP = """
import time

def nap():
    time.sleep(0.3)

nap()
"""


def test_a_300ms_sleep_is_one_call(collector: Collector, runner):
    run = profile(collector, runner, SLEEP, "one-call", TRACER_SAMPLE_DELAY="0.01")
    try:
        timeline = collector.get(collector.run_path(run, "timeline") + "?width=4000")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            pytest.skip("the collector has no timeline endpoint yet (GET .../timeline answered 404)")
        raise
    frames = timeline["frames"]
    main = next(t for t in timeline["threads"] if t["name"] == "MainThread")
    naps = [c for c in main["calls"] if frames[str(c["frame"])]["name"] == "one-call.nap"]
    assert len(naps) == 1
    assert abs(naps[0]["duration"] - 0.3) <= timeline["sample_period"] + 0.01


FORK = """
import os, time

def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

for _ in range(5):
    spin(0.05)
    pid = os.fork()
    if pid == 0:
        spin(0.1)
        print("child done", flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
print("parent done")
"""


@pytest.mark.parametrize("mode", MODES)
def test_fork_finishes_and_keeps_the_parent_run(collector: Collector, runner, mode: str):
    # A 1 ms period: forks land in the middle of sampling passes.
    run = profile(collector, runner, FORK, f"fork-{mode}", MICROLOG_SAMPLER=mode,
                  TRACER_SAMPLE_DELAY="0.001")  # fmt: skip
    info = collector.get(collector.run_path(run))
    assert info["samples"] > 0
    flame = collector.get(collector.run_path(run, "flamegraph"))
    names = {node["name"] for _, node in nodes(flame["root"])}
    assert f"fork-{mode}.spin" in names


IDLE_CHILD = """
import os, time

pid = os.fork()
if pid == 0:
    time.sleep(2.0)
    t = os.times()
    print(f"child cpu {t.user + t.system:.3f}", flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.mark.skipif(os.environ.get("ML_SANITIZE") == "address",
                    reason="GCC 12's libasan does not hold its allocator lock across fork(): a "
                    "child forked while another thread allocates can deadlock inside libasan "
                    "(seen in CI); the spin this test catches is the same code in the normal build")
def test_forked_child_idles_without_cpu(collector: Collector, runner):
    # A forked child records to its spool only; its sender thread once
    # spun on a discovery time of 0 (a whole core, starving the sampler
    # and hanging multiprocessing pools). Sleeping 2 s must cost the
    # child almost no CPU (a spinning thread takes ~2 s of it).
    profile(collector, runner, IDLE_CHILD, "idle-child")
    (line,) = [ln for ln in LAST_STDOUT if ln.startswith("child cpu")]
    assert float(line.split()[-1]) < 0.5, line


POOL = """
import multiprocessing, time

def square(x):
    end = time.monotonic() + 0.02
    while time.monotonic() < end:
        pass
    return x * x

if __name__ == "__main__":
    for method in ("fork", "spawn"):
        with multiprocessing.get_context(method).Pool(2) as pool:
            assert pool.map(square, range(20)) == [x * x for x in range(20)]
    print("pool done")
"""


def test_multiprocessing_pool_finishes(spool_collector: Collector, runner):
    """The pools finish (a worker that got Pool.terminate()'s SIGTERM just
    before blocking once lived on under a Python SIGTERM handler, and the
    pool's join() waited forever), and their 4 workers are complete child
    runs closed with their exit status: 143 for a worker that terminate()'s
    SIGTERM ended, 0 for one that read the pool's stop sentinel first (the
    pool's own race, not ours; at least one worker meets the SIGTERM)."""
    run = profile(spool_collector, runner, POOL, "pool", TRACER_SAMPLE_DELAY="0.001",
                  MICROLOG_SPOOL_DIR=str(spool_collector.spool_dir))  # fmt: skip
    parent = spool_collector.get(spool_collector.run_path(run))
    assert parent["samples"] > 0
    # 2 fork and 2 spawn workers, and the spawned resource tracker (exit 0).
    children = wait_for_children(spool_collector, parent["uid"], 5)
    workers = [c for c in children if c["label"] in ("pool-fork", "pool-python")]
    labels = sorted(c["label"] for c in workers)
    assert labels[:2] == ["pool-fork"] * 2 and labels.count("pool-python") >= 2, children
    assert all(c["exit_status"] in (0, 128 + 15) for c in workers), children
    assert any(c["exit_status"] == 128 + 15 for c in workers), children
    assert all(c["status"] == "complete" and c["samples"] > 0 for c in children), children


def wait_for_children(collector: Collector, parent_uid: str, count: int) -> List[Dict[str, Any]]:
    """The runs whose parent_id is parent_uid, once count of them are
    imported (the collector imports its spool every 2 s; 30 s at most)."""
    deadline = time.monotonic() + 30
    children: List[Dict[str, Any]] = []
    while time.monotonic() < deadline:
        children = []
        for listed in collector.get("/api/v1/runs"):
            info = collector.get(collector.run_path(listed["id"]))
            if info.get("parent_id") == parent_uid:
                children.append(info)
        if len(children) >= count:
            break
        time.sleep(0.5)
    return children


def test_fork_children_are_child_runs(spool_collector: Collector, runner):
    run = profile(spool_collector, runner, FORK, "fork-linked",
                  MICROLOG_SPOOL_DIR=str(spool_collector.spool_dir))  # fmt: skip
    assert LAST_STDOUT.count("child done") == 5  # the children's output is unchanged
    parent = spool_collector.get(spool_collector.run_path(run))
    children = wait_for_children(spool_collector, parent["uid"], 5)
    assert len(children) == 5
    for child in children:
        assert child["label"] == "fork-linked-fork"
        assert child["pid"] != parent["pid"]
        assert child["samples"] >= 1  # it spun 0.1 s at a 5 ms period
        assert child["status"] == "complete"


def test_multiprocessing_fork_children_are_child_runs(spool_collector: Collector, runner):
    source = """
import multiprocessing, time

def work(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=work, args=(0.1,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode
    print("processes done")
"""
    run = profile(spool_collector, runner, source, "mp-linked",
                  MICROLOG_SPOOL_DIR=str(spool_collector.spool_dir))  # fmt: skip
    parent = spool_collector.get(spool_collector.run_path(run))
    children = wait_for_children(spool_collector, parent["uid"], 2)
    assert len(children) == 2
    names = set()
    for child in children:
        flame = spool_collector.get(spool_collector.run_path(child["id"], "flamegraph"))
        names |= {node["name"] for _, node in nodes(flame["root"])}
    assert "mp-linked.work" in names
