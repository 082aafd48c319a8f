"""Fixtures for the microlog package tests.

The package under test is the one first on PYTHONPATH (ctest points it at
<build>/python). Programs are run in child processes with the same path, so
every test sees exactly what a user would. No test ever talks to a collector
it did not start: MICROLOG_SERVER always points at a port of our own.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, List, Optional

import pytest

BOX_CHARS = ("┏", "┃", "┗")
KEEP = ("MICROLOG_AUTOSTART",)  # set by the test harness, not a run setting

# Runs that cannot reach their collector are spooled by the client; keep
# them out of the user's ~/.microlog.
SPOOL_DIR = tempfile.mkdtemp(prefix="microlog-pytest-spool-")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(SPOOL_DIR, ignore_errors=True)


def free_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(server: Optional[str] = None, **extra: str) -> Dict[str, str]:
    """The environment of a profiled child: our package first on the path."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("MICROLOG_", "TRACER_")) and key not in KEEP:
            del env[key]
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    # Like a user's shell: buffered output (an unbuffered TextIOWrapper
    # written by several threads at once can double lines on its own).
    env.pop("PYTHONUNBUFFERED", None)
    env["MICROLOG_SERVER"] = server or f"http://127.0.0.1:{free_port()}"
    env["MICROLOG_SPOOL_DIR"] = SPOOL_DIR
    env.update(extra)
    return env


def strip_microlog(stderr: str) -> str:
    """stderr without microlog's own lines (the box, one-line warnings)."""
    return "".join(
        line
        for line in stderr.splitlines(keepends=True)
        if not line.startswith(BOX_CHARS) and not line.startswith("Microlog")
        and not line.startswith("microlog:")
    )


class Runner:
    """Runs Python programs in child processes."""

    def __init__(self, tmp: pathlib.Path) -> None:
        self.tmp = tmp

    def script(self, source: str, name: str = "prog.py") -> pathlib.Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    def run(
        self,
        args: List[str],
        env: Optional[Dict[str, str]] = None,
        timeout: float = 60,
        cwd: Optional[pathlib.Path] = None,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args],
            env=env or child_env(),
            cwd=str(cwd or self.tmp),
            capture_output=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def runner(tmp_path: pathlib.Path) -> Runner:
    return Runner(tmp_path)


@pytest.fixture
def unreachable_server(monkeypatch: pytest.MonkeyPatch) -> str:
    """In-process tests: a collector address that refuses connections."""
    url = f"http://127.0.0.1:{free_port()}"
    for key in list(os.environ):
        if key.startswith(("MICROLOG_", "TRACER_")) and key not in KEEP:
            monkeypatch.delenv(key)
    monkeypatch.setenv("MICROLOG_SERVER", url)
    monkeypatch.setenv("MICROLOG_SPOOL_DIR", SPOOL_DIR)
    return url


class Collector:
    """A real micrologd on loopback, and its HTTP query API."""

    def __init__(self, url: str, data_dir: pathlib.Path, process: subprocess.Popen) -> None:
        self.url = url
        self.data_dir = data_dir
        self.process = process

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read().decode("utf-8"))

    def run_path(self, run_id: str, what: str = "") -> str:
        path = "/api/v1/runs/" + urllib.parse.quote(run_id, safe="")
        return path + (f"/{what}" if what else "")


def _micrologd_binary() -> Optional[str]:
    path = os.environ.get("MICROLOGD")
    if path and os.path.exists(path):
        return path
    build = os.environ.get("ML_BUILD_DIR")
    candidates = [pathlib.Path(build) / "collector" / "micrologd"] if build else []
    here = pathlib.Path(__file__).resolve().parents[2]
    candidates += [here / "build-pyext" / "collector" / "micrologd"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    return shutil.which("micrologd")


@contextlib.contextmanager
def start_collector(tmp_path: pathlib.Path, *extra: str) -> Iterator[Collector]:
    """micrologd --standalone on 127.0.0.1:0 with a fresh data directory under
    tmp_path (extra: more command-line options); stopped on exit."""
    binary = _micrologd_binary()
    if binary is None:
        pytest.skip("micrologd is not built (set MICROLOGD)")
    data = tmp_path / "collector-data"
    data.mkdir()
    ready = data / "ready.json"
    log = open(tmp_path / "micrologd.log", "wb")  # pylint: disable=consider-using-with
    process = subprocess.Popen(
        [binary, "--standalone", "--data-dir", str(data), "--http", "127.0.0.1:0",
         "--ready-file", str(ready), *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        info: Dict[str, Any] = {}
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"micrologd exited with {process.returncode}")
            with contextlib.suppress(FileNotFoundError, ValueError):
                info = json.loads(ready.read_text())  # written atomically: {"http", "ingest", "pid"}
                if info.get("http"):
                    break
            time.sleep(0.05)
        if not info:
            raise RuntimeError("micrologd did not write its ready file")
        yield Collector(str(info["http"]).rstrip("/"), data, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def collector(tmp_path: pathlib.Path) -> Iterator[Collector]:
    """Starts micrologd --standalone on 127.0.0.1:0 with a fresh data directory."""
    with start_collector(tmp_path) as started:
        yield started


@pytest.fixture
def spool_collector(tmp_path: pathlib.Path) -> Iterator[Collector]:
    """A collector that also imports the runs spooled in its own spool dir
    (collector.spool_dir): give it to the profiled program as
    MICROLOG_SPOOL_DIR (forked children spool their runs)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    with start_collector(tmp_path, "--spool-dir", str(spool)) as started:
        started.spool_dir = spool  # type: ignore[attr-defined]
        yield started
