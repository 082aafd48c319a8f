"""`python -m microlog` adds little to a program's start-up: importing the
package loads none of the heavy standard modules and not libcurl
(tests/bench/bench_startup.py measures the time), and a program that imports
logging after the run has started still has its records captured (the lazy
hook in capture.py)."""

from __future__ import annotations

import json

from conftest import child_env

HEAVY = ["logging", "threading", "typing", "uuid", "dataclasses", "zipfile", "runpy",
         "inspect", "pathlib", "signal"]  # fmt: skip


def test_importing_microlog_loads_no_heavy_module(runner):
    program = runner.script(
        "import json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "before = {name for name in heavy if name in sys.modules}\n"
        "import microlog.__main__\n"
        "print(json.dumps(sorted(n for n in heavy if n in sys.modules and n not in before)))\n"
    )
    result = runner.run([str(program)])
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout.decode().splitlines()[-1]) == []


LIBCURL_LOADED = "print(any('libcurl' in line for line in open('/proc/self/maps')))\n"


def test_libcurl_is_loaded_only_for_a_remote_discovery(runner, collector):
    """Importing microlog and a whole run against a collector on this
    machine (http://127.0.0.1:PORT) never load libcurl: discovery reads the
    loopback answer itself."""
    program = runner.script(
        "import microlog.__main__\n" + LIBCURL_LOADED +
        "microlog.start('no-curl')\n"
        "microlog.stop()\n" + LIBCURL_LOADED
    )
    result = runner.run([str(program)], env=child_env(server=collector.url))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["False", "False"]
    runs = collector.get("/api/v1/runs")
    assert [run["status"] for run in runs] == ["complete"]


def test_missing_libcurl_spools_the_run_with_one_line(runner, tmp_path):
    """A server that needs libcurl (not this machine's loopback) while
    libcurl cannot be loaded: one line on stderr says so, the program runs
    on with its own output and status, and the run is spooled."""
    spool = tmp_path / "spool"
    program = runner.script("print('still here')\nraise SystemExit(3)\n")
    env = child_env(server="http://127.0.0.2:9", MICROLOG_LIBCURL="/nonexistent/libcurl.so.4",
                    MICROLOG_SPOOL_DIR=str(spool))
    result = runner.run(["-m", "microlog", "curl-missing", str(program)], env=env)
    assert result.returncode == 3
    assert result.stdout.decode() == "still here\n"
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Microlog: cannot ask http://127.0.0.2:9 for its ingest address")
    assert "cannot load libcurl: /nonexistent/libcurl.so.4" in lines[0]
    assert "run saved to" in lines[0]
    assert len(list(spool.glob("*.mlspool"))) == 1


def test_logging_imported_after_start_is_captured(runner, collector):
    program = runner.script(
        "import microlog\n"
        "microlog.start('late-logging')\n"
        "import logging\n"
        "logging.getLogger('late').warning('recorded %d', 42)\n"
        "import logging.handlers  # a submodule import goes through the finder untouched\n"
        "microlog.stop()\n"
    )
    result = runner.run([str(program)], env=child_env(server=collector.url))
    assert result.returncode == 0, result.stderr.decode()
    assert "WARNING:late:recorded 42" not in result.stdout.decode()  # no handler: lastResort
    assert "recorded 42" in result.stderr.decode()  # the terminal output is unchanged
    runs = collector.get("/api/v1/runs")
    assert len(runs) == 1
    events = collector.get(collector.run_path(runs[0]["id"], "log"))["events"]
    logged = [e for e in events if e["kind"] == "logging"]
    assert [e["message"] for e in logged] == ["recorded 42"]


def test_a_zip_file_still_runs_as_python_runs_it(runner, collector, tmp_path):
    import zipfile  # pylint: disable=import-outside-toplevel

    archive = tmp_path / "app.pyz"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("__main__.py", "print('from the zip')\n")
    result = runner.run(["-m", "microlog", "zipped", str(archive)],
                        env=child_env(server=collector.url))  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "from the zip\n"
