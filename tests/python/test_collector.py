"""A profiled program against a real micrologd: samples land in the right
function of the right thread, log events carry the stack that emitted them,
logging is recorded once, and the box names the delivered run."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List

import pytest

from conftest import Collector, child_env

PROGRAM = """
import logging, sys, threading, time
import microlog

def sleepy_function():
    time.sleep(0.3)

def printer():
    print("hello from printer")

def warner():
    logging.getLogger("app.worker").warning("disk %s is full", "/tmp")

def marker():
    microlog.print("phase", 2, "done")

def partial_writer():
    sys.stdout.write("first half, ")
    sys.stdout.write("second half\\n")

logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")
sleeper = threading.Thread(target=sleepy_function, name="Sleeper")
sleeper.start()
printer()
warner()
marker()
partial_writer()
sleeper.join()
print("unfinished line", end="")
"""


def _run(collector: Collector, runner, label: str) -> Dict[str, Any]:
    script = runner.script(PROGRAM)
    env = child_env(server=collector.url, TRACER_SAMPLE_DELAY="0.01")
    result = runner.run(["-m", "microlog", label, str(script)], env=env)
    assert result.returncode == 0, result.stderr
    box = re.search(r"┃ Microlog: (\S+)/#(\S+) ┃", result.stderr.decode())
    assert box, result.stderr
    assert box.group(1) == collector.url
    runs = [r for r in collector.get("/api/v1/runs") if r["label"] == label]
    assert [r["id"] for r in runs] == [box.group(2)]
    return {"result": result, "run_id": box.group(2)}


def _walk(node: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    yield node
    for child in node.get("children", []):
        yield from _walk(child)


def _events(collector: Collector, run_id: str) -> List[Dict[str, Any]]:
    return collector.get(collector.run_path(run_id, "log"))["events"]


@pytest.fixture
def recorded(collector: Collector, runner) -> Dict[str, Any]:
    info = _run(collector, runner, "pytest-collector")
    info["collector"] = collector
    info["run"] = collector.get(collector.run_path(info["run_id"]))
    info["events"] = _events(collector, info["run_id"])
    return info


def test_output_unchanged_with_a_collector(recorded):
    assert recorded["result"].stdout == (
        b"hello from printer\nfirst half, second half\nunfinished line"
    )


def test_sleep_shows_as_samples_of_the_function_in_its_thread(recorded):
    collector, run = recorded["collector"], recorded["run"]
    threads = {t["name"]: t for t in run["threads"]}
    assert {"MainThread", "Sleeper"} <= set(threads)
    sleeper_id, main_id = threads["Sleeper"]["id"], threads["MainThread"]["id"]
    assert threads["Sleeper"]["ended"] is not None  # it ended before the run did

    path = collector.run_path(recorded["run_id"], "flamegraph")
    in_sleeper = collector.get(f"{path}?threads={sleeper_id}")["root"]
    nodes = [n for n in _walk(in_sleeper) if n["name"] == "prog.sleepy_function"]
    assert nodes, in_sleeper
    # 300 ms at a 10 ms period: most of it is sampled even on a busy machine
    assert sum(n["value"] for n in nodes) >= 0.15
    assert nodes[0]["file"].endswith("/prog.py")
    # the thread's root is the function itself: threading's frames are hidden
    assert [c["name"] for c in in_sleeper["children"]] == ["prog.sleepy_function"]

    in_main = collector.get(f"{path}?threads={main_id}")["root"]
    assert not any(n["name"] == "prog.sleepy_function" for n in _walk(in_main))
    assert any(n["name"] == "prog.<module>" for n in _walk(in_main))


def _one(events, kind, message):
    found = [e for e in events if e["kind"] == kind and e["message"] == message]
    assert len(found) == 1, [(e["kind"], e["message"][:60]) for e in events]
    return found[0]


def _leaf(event):
    return event["stack"][-1]["name"]


def test_print_line_carries_the_printing_function(recorded):
    event = _one(recorded["events"], "stdout", "hello from printer")
    assert _leaf(event) == "prog.printer"
    assert [f["name"] for f in event["stack"]] == ["prog.<module>", "prog.printer"]
    assert event["stack"][-1]["line"] == 9


def test_partial_writes_make_one_line(recorded):
    event = _one(recorded["events"], "stdout", "first half, second half")
    assert _leaf(event) == "prog.partial_writer"
    _one(recorded["events"], "stdout", "unfinished line")  # flushed at stop


def test_logging_recorded_once_with_the_caller_stack(recorded):
    events = recorded["events"]
    event = _one(events, "logging", "disk /tmp is full")
    assert event["level"] == 30 and event["logger"] == "app.worker"
    assert _leaf(event) == "prog.warner"
    # the handler's own stderr line is not recorded a second time
    assert not [e for e in events if e["kind"] == "stderr" and "disk /tmp" in e["message"]]


def test_marker_and_analysis(recorded):
    events = recorded["events"]
    marker = _one(events, "marker", "phase 2 done")
    assert _leaf(marker) == "prog.marker"
    analysis = [e["message"] for e in events if e["kind"] == "analysis"]
    assert any(m.startswith("## Microlog") and "## Environment" in m for m in analysis)
    assert any("# GC Statistics" in m for m in analysis)


def test_run_info(recorded):
    run = recorded["run"]
    assert run["label"] == "pytest-collector"
    assert run["argv"][0].endswith("prog.py")
    assert run["status"] == "complete"
    assert run["samples"] > 10
    assert run["sample_period"] == pytest.approx(0.01)


def test_library_api_run_is_delivered(collector: Collector, runner):
    script = runner.script(
        """
        import time, microlog
        def work():
            time.sleep(0.2)
        with microlog.enabled("pytest-enabled"):
            work()
        print("done")
        """
    )
    env = child_env(server=collector.url, TRACER_SAMPLE_DELAY="0.01")
    result = runner.run([str(script)], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"done\n"
    assert "┃ Microlog: " + collector.url + "/#pytest-enabled/" in result.stderr.decode()
    runs = [r for r in collector.get("/api/v1/runs") if r["label"] == "pytest-enabled"]
    assert len(runs) == 1 and runs[0]["samples"] >= 10


def _popen_profiled(collector: Collector, script: Any, label: str) -> Any:
    """`python -m microlog label script` at 100 Hz, its output piped."""
    env = child_env(server=collector.url, TRACER_SAMPLE_DELAY="0.01")
    proc = subprocess.Popen([sys.executable, "-m", "microlog", label, str(script)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    return proc


def test_sigterm_delivers_the_run_then_dies_of_sigterm(collector: Collector, runner):
    """SIGTERM with its default action: the run is flushed and stored, and the
    process still ends the way it would have without Microlog (killed by
    SIGTERM), with its output unchanged."""
    script = runner.script(
        """
        import sys, time
        def waiting():
            print("waiting", flush=True)
            time.sleep(30)
        waiting()
        """
    )
    proc = _popen_profiled(collector, script, "pytest-sigterm")
    assert proc.stdout.readline() == b"waiting\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGTERM, err.decode()
    assert out == b""
    runs = [r for r in collector.get("/api/v1/runs") if r["label"] == "pytest-sigterm"]
    assert len(runs) == 1, err.decode()
    run = runs[0]
    assert run["status"] == "complete" and run["samples"] >= 10, run
    events = collector.get(collector.run_path(run["id"], "log"))["events"]
    assert any(e["message"] == "waiting" for e in events)


def _terminated_run(collector: Collector, label: str) -> Dict[str, Any]:
    runs = [r for r in collector.get("/api/v1/runs") if r["label"] == label]
    assert len(runs) == 1, runs
    return collector.get(collector.run_path(runs[0]["id"]))


def test_sigterm_ends_a_program_inside_a_long_c_call(collector: Collector, runner):
    """The main thread inside a C call that never looks at signals (here
    ten minutes of PBKDF2): SIGTERM still ends the process at once, not when
    the call returns, and the run is closed with exit status 143 first. A
    handler in Python would only run once the call returned; so would a
    SIGTERM that arrived just before the main thread blocked (what left
    multiprocessing pool workers alive after Pool.terminate())."""
    script = runner.script(
        """
        import hashlib
        print("hashing", flush=True)
        hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 10**9)
        print("hashed", flush=True)
        """
    )
    proc = _popen_profiled(collector, script, "pytest-sigterm-c")
    assert proc.stdout.readline() == b"hashing\n"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the profiled program was still running 20 s after SIGTERM")
    assert proc.returncode == -signal.SIGTERM, err.decode()
    assert out == b""
    run = _terminated_run(collector, "pytest-sigterm-c")
    assert run["status"] == "complete" and run["exit_status"] == 143, run
    assert run["samples"] >= 10, run


def test_sigterm_inside_a_recording_call_ends_the_process_at_once(spool_collector: Collector, runner):
    """A SIGTERM that lands while the signalled thread is inside one of the
    client's recording calls (here the main thread records log lines of
    2 000 characters back to back, and holds the client's mutex for a good
    part of its time): the thread finishes the call and then closes the run.
    Closing from inside the handler waited for that mutex until the
    handler's bound (4.5 s) and lost the run. The flood outruns the sender,
    so what the close timeout leaves unsent is spooled; the collector
    imports it (every 2 s) into the same run."""
    script = runner.script(
        """
        import logging
        log = logging.getLogger("flood")
        log.addHandler(logging.NullHandler())
        log.propagate = False
        line = "x" * 2000
        print("logging", flush=True)
        while True:
            for _ in range(100):
                log.warning(line)
        """
    )
    collector = spool_collector
    for attempt in range(3):
        label = f"pytest-sigterm-rec-{attempt}"
        env = child_env(server=collector.url, TRACER_SAMPLE_DELAY="0.01",
                        MICROLOG_SPOOL_DIR=str(collector.spool_dir))  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-m", "microlog", label, str(script)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"logging\n"
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("the profiled program was still running 20 s after SIGTERM")
        assert proc.returncode == -signal.SIGTERM, err.decode()
        deadline = time.monotonic() + 30
        while True:
            run = _terminated_run(collector, label)
            if run["status"] == "complete" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert run["status"] == "complete" and run["exit_status"] == 143, run
        assert run["logs"] > 100, run


def test_sigterm_handler_of_the_program_is_its_own(collector: Collector, runner):
    """Microlog's SIGTERM handling is invisible to the program: getsignal()
    says SIG_DFL as without Microlog, and a handler the program installs
    runs instead of ours (its exit status is the run's)."""
    script = runner.script(
        """
        import signal, sys, time
        print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
        def handler(signum, frame):
            print("handled", signum, flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
        print("waiting", flush=True)
        time.sleep(30)
        """
    )
    proc = _popen_profiled(collector, script, "pytest-sigterm-own")
    assert proc.stdout.readline() == b"True\n"
    assert proc.stdout.readline() == b"waiting\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 3, err.decode()
    assert out == b"handled 15\n"
    run = _terminated_run(collector, "pytest-sigterm-own")
    assert run["status"] == "complete" and run["exit_status"] == 3, run
