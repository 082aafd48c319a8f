"""End-of-run analysis in the log, as the original writes it: garbage
collector statistics, possible memory leaks (top live types), files opened
and never closed; and run metadata (parent chain, masked environment), read
back through a real micrologd."""

from __future__ import annotations

import re
from typing import Any, Dict, List

from conftest import Collector, child_env

PROGRAM = """
import os, sys

class Leaky:
    pass

kept = [Leaky() for _ in range(500)]
left_open = open(os.path.join(os.path.dirname(__file__), "left-open.txt"), "w")
with open(os.path.join(os.path.dirname(__file__), "closed.txt"), "w") as closed:
    closed.write("x")
print("done")
"""


def _run(collector: Collector, runner, source: str, label: str, **env: str) -> str:
    script = runner.script(source, name=f"{label}.py")
    result = runner.run(["-m", "microlog", label, str(script)],
                        env=child_env(server=collector.url, **env))  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    box = re.search(r"┃ Microlog: \S+/#(\S+) ┃", result.stderr.decode())
    assert box, result.stderr.decode()
    return box.group(1)


def _analysis(collector: Collector, run: str) -> List[str]:
    events: List[Dict[str, Any]] = collector.get(collector.run_path(run, "log"))["events"]
    return [e["message"] for e in events if e["kind"] == "analysis"]


def test_leaks_and_unclosed_files_are_reported(collector: Collector, runner):
    run = _run(collector, runner, PROGRAM, "analysis")
    text = "\n".join(_analysis(collector, run))
    assert "# GC Statistics" in text
    leaks = text[text.index("# Possible Memory Leaks"):]
    assert re.search(r"^ - 500 instances of __main__\.Leaky$", leaks, re.M), leaks
    files = text[text.index("# File Descriptors Leaked"):]
    assert "Found 1 file that were opened, but never closed" in files
    assert re.search(r"left-open\.txt mode=w .*analysis\.py:8$", files, re.M), files
    assert "closed.txt" not in files


PATHS = """
import os, pathlib, sys
here = os.path.dirname(os.path.abspath(__file__))
os.chdir(here)
os.makedirs("sub", exist_ok=True)
by_path = pathlib.Path("by-path.txt").open("w")
relative = open("sub/../relative.txt", "w")
as_bytes = open(os.fsencode(os.path.join(here, "as-bytes.txt")), "wb")
seen = []
sys.addaudithook(lambda event, args: seen.append(args[0]) if event == "open" else None)
theirs = open("theirs.txt", "w")
assert seen[-1] == "theirs.txt", seen  # the program's own hook still sees its opens
raw = os.open("raw.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
"""


def test_unclosed_files_by_pathlib_relative_and_bytes_paths(collector: Collector, runner):
    """Paths given as pathlib objects, relative (normalised), bytes or to
    os.open() are all reported, each at the program's line (pathlib's own frames are
    skipped); a hook the program adds still sees its opens."""
    run = _run(collector, runner, PATHS, "paths")
    text = "\n".join(_analysis(collector, run))
    files = text[text.index("# File Descriptors Leaked"):]
    assert "Found 5 files that were opened" in files, files
    for name, line in (("by-path.txt", 6), ("relative.txt", 7), ("as-bytes.txt", 8),
                       ("theirs.txt", 11), ("raw.txt", 13)):  # fmt: skip
        assert re.search(rf"/{re.escape(name)} mode=\w+ \S*paths\.py:{line}$", files, re.M), files
    # os.open() gives flags, not a mode: the report says what they allow.
    assert re.search(r"/raw\.txt mode=a ", files), files
    assert "sub/.." not in files


REFUSING = """
import sys
import microlog

def refuse(event, args):
    if event == "sys.addaudithook":
        raise RuntimeError("this program allows no more audit hooks")

sys.addaudithook(refuse)
microlog.start("refused")
left_open = open(__file__)
microlog.stop()
print("the program went on")
"""


def test_a_program_that_refuses_audit_hooks_is_recorded_without_the_file_report(
        collector: Collector, runner):  # fmt: skip
    """A hook of the program may refuse microlog's: the run is recorded,
    the program runs on, only the file section is missing."""
    script = runner.script(REFUSING, name="refusing.py")
    result = runner.run([str(script)], env=child_env(server=collector.url))
    assert result.returncode == 0, result.stderr.decode()
    assert b"the program went on" in result.stdout
    box = re.search(r"┃ Microlog: \S+/#(\S+) ┃", result.stderr.decode())
    assert box, result.stderr.decode()
    text = "\n".join(_analysis(collector, box.group(1)))
    assert "# GC Statistics" in text
    assert "# File Descriptors Leaked" not in text


def test_no_file_section_when_everything_is_closed(collector: Collector, runner):
    run = _run(collector, runner, "with open(__file__) as f:\n    f.read()\n", "tidy")
    text = "\n".join(_analysis(collector, run))
    assert "# GC Statistics" in text
    assert "# File Descriptors Leaked" not in text


def test_metadata_has_the_parent_chain_and_masked_environment(collector: Collector, runner):
    run = _run(collector, runner, "print('hi')\n", "meta", MICROLOG_ID="0123456789abcdef" * 2,
               APP_SECRET_TOKEN="hunter2", APP_COLOR="blue")  # fmt: skip
    info = collector.get(collector.run_path(run))
    assert info["parent_id"] == "0123456789abcdef" * 2
    assert re.fullmatch(r"[0-9a-f]{32}", info["uid"]) and info["uid"] != info["parent_id"]
    env = info["env"]
    env = dict(env) if isinstance(env, dict) else {e["key"]: e["value"] for e in env}
    assert env["APP_SECRET_TOKEN"] == "*******"
    assert env["APP_COLOR"] == "blue"
    assert "hunter2" not in str(info)


MANY = """
import os
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(here, "many"), exist_ok=True)
for i in range(10_000):
    open(os.path.join(here, "many", f"{i}.txt"), "w").close()
kept = [open(os.path.join(here, "many", f"more-{i}.txt"), "w") for i in range(3)]
"""


def test_opens_past_the_tracked_limit_are_counted(collector: Collector, runner):
    """Past 10 000 paths, opens are counted, not kept: the report says how
    many went untracked rather than silently missing what they left open."""
    run = _run(collector, runner, MANY, "many-opens")
    text = "\n".join(_analysis(collector, run))
    files = text[text.index("# File Descriptors Leaked"):]
    untracked = re.search(r"^(\d+) more opens of other paths were not tracked "
                          r"\(only the first 10,000 paths are\)", files, re.M)
    assert untracked, files
    # The 3 left open, and as many of the 10 000 as other opens (the script's own) pushed out.
    assert 3 <= int(untracked.group(1)) <= 5, files
    assert "more-0.txt" not in files
