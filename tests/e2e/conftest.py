"""End-to-end fixtures: a real micrologd on free ports with a temporary data dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

SOURCE_DIR = Path(os.environ.get("ML_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BUILD_DIR = Path(os.environ.get("ML_BUILD_DIR", SOURCE_DIR / "build"))
MICROLOGD = os.environ.get("MICROLOGD", str(BUILD_DIR / "collector" / "micrologd"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "client: runs the Python package as a user would; also run on every other "
        "interpreter (tests/interpreters/run.sh)",
    )


@dataclass
class Collector:
    proc: subprocess.Popen[bytes]
    http: str
    ingest: str
    data_dir: Path
    log_path: Path

    def url(self, path: str) -> str:
        return self.http + path

    def request(self, path: str, method: str = "GET") -> tuple[int, Any]:
        req = urllib.request.Request(self.url(path), method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            body = err.read()
            status = err.code
        if not body:
            return status, None
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode("utf-8", "replace")

    def get(self, path: str) -> Any:
        status, body = self.request(path)
        assert status == 200, (path, status, body)
        return body

    def run_path(self, run_id: str, endpoint: str = "") -> str:
        path = "/api/v1/runs/" + urllib.parse.quote(run_id, safe="")
        return path + ("/" + endpoint if endpoint else "")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_collector(data_dir: Path, *extra: str) -> Collector:
    data_dir.mkdir(parents=True, exist_ok=True)
    ready = data_dir / "ready.json"
    if ready.exists():
        ready.unlink()
    log_path = data_dir / "micrologd.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [MICROLOGD, "--standalone", "--data-dir", str(data_dir), "--http", "127.0.0.1:0",
         "--ready-file", str(ready), *extra],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"micrologd exited with {proc.returncode}: {log_path.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"micrologd did not get ready: {log_path.read_text()}")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    return Collector(proc, info["http"], info["ingest"], data_dir, log_path)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = start_collector(tmp_path / "data")
    yield c
    code = c.stop()
    log = c.log_path.read_text(errors="replace")
    assert code == 0, f"micrologd exit status {code}\n{log}"
    assert "ERROR: AddressSanitizer" not in log and "runtime error:" not in log, log


@dataclass
class Profiled:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float


def run_python(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = 60) -> Profiled:
    full_env = dict(os.environ)
    full_env.update(env or {})
    start = time.monotonic()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)
    return Profiled(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
