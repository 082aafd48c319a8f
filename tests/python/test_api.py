"""The public API in-process: start/stop/is_running/enabled/print, what the
sampler's frame walk sees, and that stop() gives back exactly what start()
took. The collector address refuses connections: nothing is delivered."""

from __future__ import annotations

import gc
import inspect
import logging
import sys
import threading
import time

import pytest

import microlog
from microlog import _native
from microlog import api


@pytest.fixture(autouse=True)
def _stopped(unreachable_server: str):
    """Every test starts and ends with microlog stopped."""
    assert not microlog.is_running()
    yield
    api._singleton.finish(0, timeout=0.5)  # pylint: disable=protected-access


def test_public_names_match_the_original():
    assert sorted(microlog.__all__) == ["enabled", "is_running", "print", "start", "stop"]
    start = inspect.signature(microlog.start).parameters
    assert list(start) == ["application"] and start["application"].default == ""
    assert not inspect.signature(microlog.stop).parameters
    assert not inspect.signature(microlog.is_running).parameters
    assert list(inspect.signature(microlog.print).parameters) == ["args"]


def test_start_stop_is_running_and_idempotence(capsys: pytest.CaptureFixture[str]):
    microlog.start("api-test")
    assert microlog.is_running() and _native.is_running()
    run_id = _native.run_id()
    assert run_id.startswith("api-test/")
    microlog.start("another")  # already running: no-op
    assert _native.run_id() == run_id
    microlog.stop()
    assert not microlog.is_running() and not _native.is_running()
    microlog.stop()  # not running: no-op
    captured = capsys.readouterr()
    assert "┏" not in captured.err + captured.out  # nothing was delivered: no box


def test_enabled_context_manager():
    with microlog.enabled("ctx-test") as ctx:
        assert isinstance(ctx, microlog.enabled)
        assert microlog.is_running()
    assert not microlog.is_running()


def test_enabled_stops_on_exception():
    with pytest.raises(KeyError):
        with microlog.enabled("ctx-error"):
            raise KeyError("x")
    assert not microlog.is_running()


def test_print_records_but_does_not_write(capsys: pytest.CaptureFixture[str]):
    microlog.print("not running")  # no-op, no error
    microlog.start("print-test")
    microlog.print("marker", 1, {"a": 2})
    assert _native.log(_native.LOG_MARKER, 0, "direct") is True
    microlog.stop()
    assert capsys.readouterr().out == ""
    assert _native.log(_native.LOG_MARKER, 0, "after stop") is False


def test_stop_result_reports_the_undelivered_run():
    microlog.start("result-test")
    time.sleep(0.12)
    result = api._singleton.finish(0, timeout=0.5)  # pylint: disable=protected-access
    assert result is not None
    assert result["run_id"].startswith("result-test/")
    assert result["delivered"] is False and result["collector_reached"] is False
    assert result["passes"] >= 1  # the sampler ran
    assert result["statuses"] >= 1  # and ticked
    assert result["native_errors"] == 0
    assert result["spooled"] is True and result["spool_path"]
    assert set(result) >= {"samples", "logs", "dropped_samples", "dropped_logs", "error"}


def test_stop_restores_streams_logging_and_gc_callbacks():
    stdout, stderr = sys.stdout, sys.stderr
    before = (
        dict(getattr(stdout, "__dict__", {})),
        dict(getattr(stderr, "__dict__", {})),
        logging.Logger.__dict__["callHandlers"],
        list(gc.callbacks),
    )
    microlog.start("restore-test")
    assert logging.Logger.__dict__["callHandlers"] is not before[2]
    microlog.stop()
    after = (
        dict(getattr(stdout, "__dict__", {})),
        dict(getattr(stderr, "__dict__", {})),
        logging.Logger.__dict__["callHandlers"],
        list(gc.callbacks),
    )
    assert sys.stdout is stdout and sys.stderr is stderr
    assert after == before


def test_environment_is_set_for_children(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MICROLOG_ID", "parent0123")
    microlog.start("env-test")
    import os  # pylint: disable=import-outside-toplevel

    assert os.environ["MICROLOG_PARENT_ID"] == "parent0123"
    assert len(os.environ["MICROLOG_ID"]) == 32 and os.environ["MICROLOG_ID"] != "parent0123"
    microlog.stop()


def test_sensitive_environment_values_are_masked():
    assert api.format_sensitive("AWS_SECRET_ACCESS_KEY", "abc") == "***"
    assert api.format_sensitive("GITHUB_TOKEN", "tok") == "***"
    assert api.format_sensitive("PATH", "/bin") == "****"
    assert api.format_sensitive("LANG", "C.UTF-8") == "C.UTF-8"


def test_get_application_like_the_original(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "argv", ["/home/me/src/tools/report.py", "x"])
    assert api.get_application() == "src-tools-report"
    monkeypatch.setattr(sys, "argv", ["-c"])
    assert api.get_application() == "python"


# ---- the frame walk ---------------------------------------------------------


def _names(frames):
    return [name for name, _file, _line, _flags in frames]


def test_walk_sees_another_thread_in_its_named_function():
    ready, done = threading.Event(), threading.Event()

    def sleepy_function():
        ready.set()
        done.wait(5)  # this line is where the thread waits

    wait_line = inspect.getsourcelines(sleepy_function)[1] + 2
    thread = threading.Thread(target=sleepy_function, name="Sleeper")
    microlog.start("walk-test")
    thread.start()
    try:
        ready.wait(5)
        time.sleep(0.05)
        frames, truncated = _native._walk(thread.ident)  # pylint: disable=protected-access
    finally:
        done.set()
        thread.join()
    names = _names(frames)
    assert truncated == 0
    assert names[-1] == "test_api.test_walk_sees_another_thread_in_its_named_function.<locals>.sleepy_function"
    assert frames[-1][1] == __file__ and frames[-1][2] == wait_line
    # threading's own frames (Thread.run, _bootstrap, Event.wait) are left out
    assert not any(name.startswith("threading.") for name in names)


def test_walk_of_the_calling_thread_ends_in_the_caller():
    microlog.start("walk-self")
    frames, _ = _native._walk()  # pylint: disable=protected-access
    line = inspect.currentframe().f_lineno - 1
    name, file, lineno, flags = frames[-1]
    assert name == "test_api.test_walk_of_the_calling_thread_ends_in_the_caller"
    assert (file, lineno, flags) == (__file__, line, 0)


def test_walk_caps_the_depth_and_counts_the_cut():
    microlog.start("walk-deep")

    def recurse(n):
        if n == 0:
            return _native._walk()  # pylint: disable=protected-access
        return recurse(n - 1)

    shallow, cut_shallow = recurse(10)
    deep, cut_deep = recurse(400)
    assert cut_shallow == 0
    assert len(deep) <= _native.MAX_DEPTH and cut_deep > 0
    assert len(deep) + cut_deep > 400
    # the cut is nearest the root: the leaf end is still the recursion
    assert _names(deep)[-1].endswith("recurse")
    assert len(shallow) < len(deep)


def test_walk_not_running_raises():
    with pytest.raises(RuntimeError):
        _native._walk()  # pylint: disable=protected-access


def test_disable_makes_start_a_no_op(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MICROLOG_DISABLE", "TRUE")
    before = (dict(vars(sys.stdout)) if hasattr(sys.stdout, "__dict__") else None,
              logging.Logger.__dict__["callHandlers"])
    microlog.start("disabled")
    with microlog.enabled("disabled-too"):
        assert not microlog.is_running()
        microlog.print("nothing")
    assert not microlog.is_running() and not _native.is_running()
    after = (dict(vars(sys.stdout)) if hasattr(sys.stdout, "__dict__") else None,
             logging.Logger.__dict__["callHandlers"])
    assert after == before


def test_status_period_sets_the_tick_rate(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRACER_STATUS_DELAY", "0.01")
    monkeypatch.setenv("TRACER_SAMPLE_DELAY", "0.2")
    microlog.start("status-rate")
    time.sleep(0.3)
    result = api._singleton.finish(0, timeout=0.5)  # pylint: disable=protected-access
    assert 10 <= result["statuses"] <= 40
    assert result["passes"] <= 3
