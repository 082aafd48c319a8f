"""Child processes of a recorded program record themselves (microlog.pth),
linked to the parent's run, through a real micrologd.

The .pth file is processed only from a site directory, never from a
PYTHONPATH entry, so each test makes a virtual environment (no pip, a few
tens of milliseconds) whose site-packages holds a link to the build's
microlog.pth, as the installed wheel would; the package itself comes from
PYTHONPATH as in every test here.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import venv

import pytest

import microlog
from conftest import Collector, child_env

# Beside the package in the build tree (build/python/microlog.pth), as in site-packages.
PTH = pathlib.Path(microlog.__file__).parent.parent / "microlog.pth"

PARENT = """
import subprocess, sys
subprocess.run([sys.executable, "worker.py", "3"], check=True)
print("parent done")
"""

WORKER = """
import sys, time

def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

spin(0.2)
print("worker output", sys.argv[1:], flush=True)
"""


@pytest.fixture
def site_python(tmp_path: pathlib.Path) -> str:
    """A python whose site-packages holds microlog.pth."""
    if not PTH.exists():
        pytest.skip(f"no microlog.pth beside the package ({PTH})")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    (site / "microlog.pth").symlink_to(PTH)
    return str(env_dir / "bin" / "python")


def _run(python: str, args, cwd: pathlib.Path, env) -> subprocess.CompletedProcess:
    return subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True, timeout=120,
                          check=False)  # fmt: skip


def _runs_with_parent(collector: Collector, uid: str):
    children = []
    for listed in collector.get("/api/v1/runs"):
        info = collector.get(collector.run_path(listed["id"]))
        if info.get("parent_id") == uid:
            children.append(info)
    return children


def test_subprocess_child_is_a_linked_run(collector: Collector, site_python: str, tmp_path):
    (tmp_path / "parent.py").write_text(PARENT)
    (tmp_path / "worker.py").write_text(WORKER)
    env = child_env(server=collector.url, TRACER_SAMPLE_DELAY="0.005")
    result = _run(site_python, ["-m", "microlog", "family", "parent.py"], tmp_path, env)
    assert result.returncode == 0, result.stderr.decode()
    # The child's output reaches the terminal unchanged, and only the parent
    # prints the box.
    assert result.stdout.decode().splitlines() == ["worker output ['3']", "parent done"]
    boxes = re.findall(r"┃ Microlog: \S+/#(\S+) ┃", result.stderr.decode())
    assert len(boxes) == 1, result.stderr.decode()
    parent = collector.get(collector.run_path(boxes[0]))
    children = _runs_with_parent(collector, parent["uid"])
    assert len(children) == 1
    child = children[0]
    assert child["label"] == "family-worker"
    assert child["pid"] != parent["pid"]
    assert child["samples"] >= 5  # 0.2 s of spinning at a 5 ms period
    assert child["argv"][-1] == "3"


def test_no_child_run_when_disabled_or_not_recording(collector: Collector, site_python: str,
                                                     tmp_path):  # fmt: skip
    (tmp_path / "parent.py").write_text(PARENT)
    (tmp_path / "worker.py").write_text(WORKER)
    env = child_env(server=collector.url, MICROLOG_CHILDREN="false")
    result = _run(site_python, ["-m", "microlog", "alone", "parent.py"], tmp_path, env)
    assert result.returncode == 0, result.stderr.decode()
    # Not recording at all: the .pth line does nothing.
    plain = _run(site_python, ["worker.py", "1"], tmp_path, child_env(server=collector.url))
    assert plain.returncode == 0 and plain.stderr.decode() == ""
    labels = sorted(r["label"] for r in collector.get("/api/v1/runs"))
    assert labels == ["alone"]


def test_environment_is_restored_after_stop(collector: Collector, runner):
    program = runner.script(
        "import os, microlog\n"
        "before = os.environ.get('MICROLOG_CHILD')\n"
        "microlog.start('env')\n"
        "during = os.environ.get('MICROLOG_CHILD')\n"
        "microlog.stop()\n"
        "print(before, during, os.environ.get('MICROLOG_CHILD'))\n"
    )
    result = runner.run([str(program)], env=child_env(server=collector.url))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["None", "1", "None"]
