"""The sampler in a running process: it walks frames without creating
frame objects (3.11 layer), survives fork(), and leaves no thread behind."""

from __future__ import annotations

import threading
import time
import tracemalloc

import pytest

import microlog
from microlog import _native
from microlog import api


@pytest.fixture(autouse=True)
def _stopped(unreachable_server: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRACER_SAMPLE_DELAY", "0.001")
    yield
    api._singleton.finish(0, timeout=0.5)  # pylint: disable=protected-access


@pytest.mark.skipif(_native.FRAMES_IMPL == "c-api", reason="the public-API frame layer allocates frame objects")
def test_steady_state_sampling_allocates_no_python_memory(monkeypatch: pytest.MonkeyPatch):
    """Once every code object and thread is interned, a pass allocates
    nothing from Python's allocators: not even a transient frame object
    (the public-API layer makes one whenever it meets a new call). Status
    ticks are kept out of the window: on 3.12+ a tick reads
    sys.getallocatedblocks(), whose int result is an allocation."""
    monkeypatch.setenv("TRACER_STATUS_DELAY", "60")
    monkeypatch.setenv("TRACER_MEMORY_DELAY", "60")
    ready, done = threading.Event(), threading.Event()

    def step():
        pass

    def busy_caller():
        ready.set()
        while not done.is_set():
            step()  # a new frame at every call: the sampler keeps meeting fresh ones

    thread = threading.Thread(target=busy_caller, name="Busy")
    thread.start()
    ready.wait(5)
    microlog.start("no-allocation")
    try:
        time.sleep(0.2)  # warm-up: code objects, thread names, the first ticks
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            time.sleep(0.3)  # a few hundred passes at a 1 ms period
            current, peak = tracemalloc.get_traced_memory()
            where = tracemalloc.take_snapshot().statistics("traceback")[:3] if current else []
        finally:
            tracemalloc.stop()
    finally:
        done.set()
        thread.join()
    result = api._singleton.finish(0, timeout=0.5)  # pylint: disable=protected-access
    assert result["passes"] >= 100
    assert (current, peak) == (0, 0), [str(line) for stat in where for line in stat.traceback]


def test_sampler_thread_is_gone_after_stop():
    def native_threads():
        import os  # pylint: disable=import-outside-toplevel

        return len(os.listdir("/proc/self/task"))

    before = native_threads()
    microlog.start("threads")
    time.sleep(0.05)
    assert native_threads() > before  # the sampler (and the client's sender)
    microlog.stop()
    assert native_threads() == before


def test_many_short_threads_are_sampled_and_ended():
    microlog.start("short-threads")

    def spin():
        end = time.monotonic() + 0.01
        while time.monotonic() < end:
            pass

    for _ in range(50):
        threads = [threading.Thread(target=spin) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    result = api._singleton.finish(0, timeout=0.5)  # pylint: disable=protected-access
    assert result["native_errors"] == 0
    assert result["samples"] > result["passes"]  # several threads per pass


def test_threads_ending_unjoined_under_a_fast_sampler():
    """Threads that end on their own while the sampler (1 ms) is between
    seeing them and reading their CPU clock: their pthread ids then name
    freed memory, which must never be read (glibc 2.43 crashed in
    pthread_getcpuclockid on such an id). Thread states made but not yet
    started (ident 0 on 3.12+) are met here too."""
    import _thread  # pylint: disable=import-outside-toplevel

    microlog.start("ending-threads")
    done = []

    def blip():
        done.append(1)

    end = time.monotonic() + 1.0
    started = 0
    while time.monotonic() < end:
        for _ in range(20):
            _thread.start_new_thread(blip, ())
            started += 1
        threading.Thread(target=blip, daemon=True).start()
        started += 1
        time.sleep(0.0005)
    deadline = time.monotonic() + 10
    while len(done) < started and time.monotonic() < deadline:
        time.sleep(0.01)
    result = api._singleton.finish(0, timeout=0.5)  # pylint: disable=protected-access
    assert len(done) == started
    assert result["native_errors"] == 0
    assert result["passes"] >= 200


def test_fork_child_records_its_own_run_and_parent_keeps_its_own(runner):
    """The child drops the inherited run without touching its threads or
    locks and records a spool-only run of its own (tests/python/test_fidelity.py
    checks that the collector links it to the parent)."""
    script = runner.script(
        """
        import os, sys, time, microlog
        microlog.start("forking")
        time.sleep(0.05)
        pid = os.fork()
        if pid == 0:
            print("child running:", microlog.is_running(), flush=True)
            microlog.print("ignored in the child")
            time.sleep(0.05)
            sys.exit(0)  # atexit ends the child's own run
        _, status = os.waitpid(pid, 0)
        print("parent running:", microlog.is_running(), "child status:", status, flush=True)
        microlog.stop()
        print("parent stopped:", microlog.is_running())
        """
    )
    from conftest import child_env  # pylint: disable=import-outside-toplevel

    result = runner.run([str(script)], env=child_env(TRACER_SAMPLE_DELAY="0.001"), timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        b"child running: True\nparent running: True child status: 0\nparent stopped: False\n"
    )


def test_start_stop_cycles_while_threads_print_and_log(runner):
    """Runs start/stop repeatedly while other threads write and log: no
    crash, no deadlock, and every line still reaches stdout exactly once."""
    script = runner.script(
        """
        import logging, sys, threading, microlog
        logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.INFO)
        stop = threading.Event()
        counts = [0, 0, 0]
        # CPython's TextIOWrapper is not thread-safe: unserialised writers
        # lose lines and write NUL bytes without any profiler. The lock keeps
        # that race out; start/stop still race with every write.
        lock = threading.Lock()

        def writer(i):
            while not stop.is_set() and counts[i] < 30000:
                counts[i] += 1
                with lock:
                    if i == 2:
                        logging.info("log %d %d", i, counts[i])
                    else:
                        print(f"line {i} {counts[i]}")

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for cycle in range(15):
            microlog.start(f"cycle{cycle}")
            microlog.print("cycle", cycle)
            microlog.stop()
        stop.set()
        for t in threads:
            t.join()
        sys.stderr.write(f"COUNTS {sum(counts)}\\n")
        """
    )
    from conftest import child_env  # pylint: disable=import-outside-toplevel

    env = child_env(TRACER_SAMPLE_DELAY="0.001", TRACER_STATUS_DELAY="0.005")
    result = runner.run([str(script)], env=env, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    lines = result.stdout.decode().splitlines()
    total = int(result.stderr.decode().split("COUNTS ")[1].split()[0])
    assert len(lines) == total
    assert len(set(lines)) == total  # none doubled, none lost
