"""Shared by bench_overhead/sampler/startup: a real micrologd on free ports,
profiled and plain runs of a workload, medians and spreads."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

SRC = Path(__file__).resolve().parents[3]
BUILD = Path(os.environ.get("ML_BUILD_DIR", SRC / "build"))
MICROLOGD = os.environ.get("MICROLOGD", str(BUILD / "collector" / "micrologd"))
PYTHON = sys.executable


class Collector:
    """micrologd --standalone with a temporary data dir; stop() ends it."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="ml-bench-")
        data = Path(self.tmp.name)
        ready = data / "ready.json"
        self.proc = subprocess.Popen(
            [MICROLOGD, "--standalone", "--data-dir", str(data), "--http", "127.0.0.1:0",
             "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.url = json.loads(ready.read_text())["http"].rstrip("/")
                self.data = data
                return
            except (FileNotFoundError, ValueError, KeyError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("micrologd did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.tmp.cleanup()


def env_for(collector: Optional[Collector], **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROLOG_", "TRACER_"))}
    if collector is not None:
        env["MICROLOG_SERVER"] = collector.url
    env.update(extra)
    return env


def run_json(args: List[str], env: Dict[str, str]) -> Dict[str, Any]:
    """Runs python args; returns the JSON of its last stdout line."""
    out = subprocess.run([PYTHON, *args], env=env, capture_output=True, check=False, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{args} exited {out.returncode}: {out.stderr.decode()[-2000:]}")
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def spread(values: List[float]) -> str:
    """median [min..max] of values."""
    return f"{statistics.median(values):.4f} [{min(values):.4f}..{max(values):.4f}]"


def write_json(name: str, data: Any) -> None:
    out = os.environ.get("ML_BENCH_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(json.dumps(data, indent=2))
