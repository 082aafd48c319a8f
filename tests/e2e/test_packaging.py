"""`python -m build` makes a wheel that installs and works in a fresh virtual
environment, against a real collector."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import SOURCE_DIR, Collector


@pytest.mark.skipif(os.environ.get("ML_SANITIZE") == "address",
                    reason="the wheel is a release build; packaging is checked in the normal build")
def test_wheel_installs_and_profiles(collector: Collector, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(SOURCE_DIR)],
        capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    wheels = list(dist.glob("micrologai-*.whl"))
    assert len(wheels) == 1, wheels

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", str(wheels[0])],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr

    script = tmp_path / "wheel_check.py"
    script.write_text("import microlog, time\nprint('from the wheel')\ntime.sleep(0.2)\n")
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_PRELOAD")}
    clean_env["MICROLOG_SERVER"] = collector.http
    result = subprocess.run([str(py), "-m", "microlog", "wheel-check", str(script)],
                            capture_output=True, text=True, env=clean_env, cwd=tmp_path,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the wheel\n"
    where = subprocess.run([str(py), "-c", "import microlog._native as n; print(n.__file__)"],
                           capture_output=True, text=True, env=clean_env, cwd=tmp_path)
    assert str(env_dir) in where.stdout, where
    match = re.search(r"Microlog: \S+#(wheel-check/\S+) ", result.stderr)
    assert match, result.stderr
    run = collector.get(collector.run_path(match.group(1)))
    assert run["status"] == "complete"
