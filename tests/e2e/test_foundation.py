"""One profiled run travels the whole path: python -m microlog -> libmicrolog ->
nng -> micrologd -> journal on disk -> HTTP API, all real processes."""

from __future__ import annotations

import os
import re
import socket
import textwrap
from pathlib import Path

import pytest

from conftest import Collector, run_python, wait_for

pytestmark = pytest.mark.client

SCRIPT = textwrap.dedent('''
    import logging
    import sys
    import threading
    import time

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")

    def busy_wait(seconds):
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            n += 1
        return n

    def sleeper():
        time.sleep(0.3)

    def announce(word):
        print("hello from", word)

    def main():
        announce("e2e")
        worker = threading.Thread(target=sleeper, name="sleepy-worker")
        worker.start()
        busy_wait(0.6)
        worker.join()
        logging.getLogger("e2e.logger").warning("careful: %s", "warned")
        print("partial", end="")
        print(" line", "ü", sep="|")
        sys.stderr.write("to stderr\\n")
        print("args:", sys.argv[1:])

    main()
''')

RAISING = textwrap.dedent('''
    def explode():
        time.sleep(0.1)
        raise ValueError("boom from the script")

    import time
    print("before")
    explode()
''')

BOX = re.compile(r"┃ Microlog: (\S+) ┃")


def write_script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def profile(collector: Collector, label: str, script: Path, *args: str, **env: str):
    return run_python(["-m", "microlog", label, str(script), *args],
                      env={"MICROLOG_SERVER": collector.http, **env})


def test_profiled_run_reaches_the_api(collector: Collector, tmp_path: Path) -> None:
    script = write_script(tmp_path, "e2e_script.py", SCRIPT)
    plain = run_python([str(script), "a1", "--b"])
    result = profile(collector, "e2e-hello", script, "a1", "--b")
    assert result.returncode == 0, result.stderr
    # The program's own output is unchanged, byte for byte.
    assert result.stdout == plain.stdout
    assert "to stderr\n" in result.stderr
    assert "WARNING:e2e.logger:careful: warned" in result.stderr

    match = BOX.search(result.stderr)
    assert match, result.stderr
    url = match.group(1)
    assert url.startswith(collector.http + "/#e2e-hello/")
    run_id = url.split("#", 1)[1]
    assert re.fullmatch(r"e2e-hello/\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d(-\d+)?", run_id)

    runs = collector.get("/api/v1/runs")
    assert isinstance(runs, list)
    run = next(r for r in runs if r["id"] == run_id)
    assert run["label"] == "e2e-hello"
    assert run["status"] == "complete"
    assert 0.55 <= run["duration"] < 10
    # 0.6 s at the default 50 ms period on two threads: about 18 samples.
    assert run["samples"] >= 10
    assert run["started"] > 1.7e9

    detail = collector.get(collector.run_path(run_id))
    names = {t["name"] for t in detail["threads"]}
    assert "MainThread" in names and "sleepy-worker" in names

    events = collector.get(collector.run_path(run_id, "log"))["events"]
    messages = [(e["kind"], e["message"]) for e in events]
    assert ("stdout", "hello from e2e") in messages
    assert ("stdout", "partial line|ü") in messages
    assert ("stderr", "to stderr") in messages
    hello = next(e for e in events if e["message"] == "hello from e2e")
    stack_names = [f["name"] for f in hello["stack"]]
    assert stack_names[-1].endswith("announce"), stack_names
    assert any(n.endswith("main") for n in stack_names), stack_names
    assert hello["stack"][-1]["file"] == str(script)
    assert hello["stack"][-1]["line"] == SCRIPT.splitlines().index('    print("hello from", word)') + 1
    warned = next(e for e in events if e["kind"] == "logging")
    assert warned["level"] == 30 and warned["logger"] == "e2e.logger"
    assert "careful: warned" in warned["message"]
    # The logging handler's write to stderr is not recorded a second time.
    assert not any(e["kind"] == "stderr" and "careful" in e["message"] for e in events)

    flame = collector.get(collector.run_path(run_id, "flamegraph"))

    def find(node, suffix):
        if node["name"].endswith(suffix):
            return node
        for child in node.get("children", []):
            hit = find(child, suffix)
            if hit:
                return hit
        return None

    busy = find(flame["root"], "busy_wait")
    assert busy is not None
    assert 0.4 <= busy["value"] <= 1.2, busy
    sleeper = find(flame["root"], "sleeper")
    assert sleeper is not None and sleeper["value"] >= 0.15, sleeper


def test_script_that_raises_keeps_its_status_and_traceback(collector: Collector,
                                                            tmp_path: Path) -> None:
    script = write_script(tmp_path, "raising.py", RAISING)
    plain = run_python([str(script)])
    result = profile(collector, "e2e-raise", script)
    assert plain.returncode == 1
    assert result.returncode == plain.returncode
    assert result.stdout == plain.stdout == "before\n"
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: boom from the script" in result.stderr
    match = BOX.search(result.stderr)
    assert match, result.stderr
    run_id = match.group(1).split("#", 1)[1]
    run = collector.get(collector.run_path(run_id))
    assert run["status"] == "complete"
    assert run["samples"] >= 1


def test_sys_exit_code_is_kept(collector: Collector, tmp_path: Path) -> None:
    script = write_script(tmp_path, "exit3.py", "import sys\nprint('bye')\nsys.exit(3)\n")
    result = profile(collector, "e2e-exit", script)
    assert result.returncode == 3
    assert result.stdout == "bye\n"


def test_module_form(collector: Collector, tmp_path: Path) -> None:
    pkg = tmp_path / "e2e_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text("import sys\nprint('module args', sys.argv[1:])\n")
    result = run_python(["-m", "microlog", "e2e-module", "-m", "e2e_pkg.tool", "x", "y"],
                        env={"MICROLOG_SERVER": collector.http}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "module args ['x', 'y']\n"
    assert BOX.search(result.stderr)


def test_unreachable_collector_prints_one_line(tmp_path: Path) -> None:
    script = write_script(tmp_path, "quiet.py", "print('still works')\n")
    # A port nothing listens on, and a server name that does not resolve.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    for server in (f"http://127.0.0.1:{free_port}", "http://no-such-host.invalid:7777",
                   "not a url"):
        result = run_python(["-m", "microlog", "e2e-unreachable", str(script)],
                            env={"MICROLOG_SERVER": server,
                                 "MICROLOG_SPOOL_DIR": str(tmp_path / "spool")})
        assert result.returncode == 0
        assert result.stdout == "still works\n"
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert "Microlog" in lines[0]
        assert result.elapsed < 8, result.elapsed


def test_disable_turns_everything_off(collector: Collector, tmp_path: Path) -> None:
    script = write_script(tmp_path, "off.py", "print('plain run')\n")
    result = profile(collector, "e2e-disabled", script, MICROLOG_DISABLE="true")
    assert result.returncode == 0
    assert result.stdout == "plain run\n"
    assert result.stderr == ""
    assert collector.get("/api/v1/runs?filter=e2e-disabled") == []


def test_filter_health_and_page(collector: Collector, tmp_path: Path) -> None:
    script = write_script(tmp_path, "tiny.py", "print('x')\n")
    for label in ("e2e-alpha", "e2e-beta"):
        assert profile(collector, label, script).returncode == 0
    assert collector.get("/healthz")["status"] == "ok"
    alpha = collector.get("/api/v1/runs?filter=alpha")
    assert [r["label"] for r in alpha] == ["e2e-alpha"]
    status, body = collector.request("/api/v1/runs?filter=%28unclosed")
    assert status == 400 and "error" in body
    status, body = collector.request(collector.run_path("e2e-alpha/1999_01_01_00_00_00"))
    assert status == 404
    status, page = collector.request("/")
    assert status == 200 and "Microlog" in page


def test_runs_survive_a_restart(tmp_path: Path) -> None:
    from conftest import start_collector

    data = tmp_path / "data"
    first = start_collector(data)
    try:
        script = write_script(tmp_path, "persist.py", "print('kept')\n")
        result = profile(first, "e2e-persist", script)
        assert result.returncode == 0
    finally:
        assert first.stop() == 0
    second = start_collector(data)
    try:
        runs = second.get("/api/v1/runs?filter=e2e-persist")
        assert len(runs) == 1 and runs[0]["status"] == "complete"
        events = second.get(second.run_path(runs[0]["id"], "log"))["events"]
        assert any(e["message"] == "kept" for e in events)
    finally:
        assert second.stop() == 0
    assert wait_for(lambda: True)
    assert os.path.isdir(data / "runs")
