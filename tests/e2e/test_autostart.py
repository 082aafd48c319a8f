"""With nothing listening at a local MICROLOG_SERVER, the client starts
`micrologd --standalone` itself (detached) and the run is delivered to it;
MICROLOG_AUTOSTART=0 turns that off."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import MICROLOGD, run_python, wait_for

pytestmark = pytest.mark.client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def collector_pids(home: Path) -> list[int]:
    """micrologd processes whose data dir is under this test's HOME."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"micrologd") and f"HOME={home}".encode() in env:
            pids.append(int(proc.name))
    return pids


# make test-tsan preloads libtsan into every process; /bin/sh, which
# starts micrologd here, crashes with it (SIGSEGV before running anything).
@pytest.mark.skipif(os.environ.get("ML_SANITIZE") == "thread",
                    reason="libtsan preloaded into /bin/sh crashes it")
def test_client_starts_a_standalone_collector(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = f"http://127.0.0.1:{free_port()}"
    script = tmp_path / "auto.py"
    script.write_text("import time\nprint('autostarted')\ntime.sleep(0.3)\n")
    env = {"MICROLOG_SERVER": server, "MICROLOG_AUTOSTART": "1", "MICROLOGD": MICROLOGD,
           "HOME": str(home), "MICROLOG_SPOOL_DIR": str(home / ".microlog" / "spool")}
    try:
        result = run_python(["-m", "microlog", "e2e-autostart", str(script)], env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "autostarted\n"
        assert wait_for(lambda: healthy(server), timeout=30), result.stderr
        # Delivered live, or spooled and imported by the collector it started:
        # either way the run appears, once.
        def listed():
            with urllib.request.urlopen(server + "/api/v1/runs?filter=e2e-autostart",
                                        timeout=5) as r:
                runs = json.loads(r.read())
            return runs if runs and runs[0]["status"] == "complete" else None
        runs = wait_for(listed, timeout=20)
        assert runs and len(runs) == 1, result.stderr
        assert (home / ".microlog" / "runs").is_dir()
        assert collector_pids(home), "the started collector is not running detached"
    finally:
        for pid in collector_pids(home):
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not collector_pids(home), timeout=10)


def test_autostart_off(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = f"http://127.0.0.1:{free_port()}"
    script = tmp_path / "off.py"
    script.write_text("print('no collector')\n")
    env = {"MICROLOG_SERVER": server, "MICROLOG_AUTOSTART": "0", "MICROLOGD": MICROLOGD,
           "HOME": str(home), "MICROLOG_SPOOL_DIR": str(home / "spool")}
    result = run_python(["-m", "microlog", "e2e-autostart-off", str(script)], env=env)
    assert result.returncode == 0 and result.stdout == "no collector\n"
    time.sleep(0.5)
    assert not healthy(server)
    assert not collector_pids(home)
