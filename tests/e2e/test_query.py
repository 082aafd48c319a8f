"""The query API (issue 6) against runs recorded from known programs: a real
micrologd, real `python -m microlog` runs, every endpoint and export checked
against what the program is known to have done."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import Collector, run_python, wait_for

PERIOD = 0.01

KNOWN = """
import logging, time

def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

class Worker:
    def step(self, seconds):
        busy(seconds)

    def pause(self):
        time.sleep(0.03)

def slow_sleep():
    time.sleep(0.3)

def main():
    w = Worker()
    for i in range(12):
        w.step(0.25 if i == 7 else 0.05)
        w.pause()
    slow_sleep()
    print("done printing")
    logging.warning("all done")

main()
"""


def profile(collector: Collector, tmp_path: Path, label: str, text: str, name: str = "known.py",
            period: float = PERIOD) -> str:
    script = tmp_path / name
    script.write_text(text)
    result = run_python(["-m", "microlog", label, str(script)],
                        env={"MICROLOG_SERVER": collector.http, "TRACER_SAMPLE_DELAY": str(period)},
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = wait_for(lambda: [r for r in collector.get("/api/v1/runs") if r["label"] == label
                             and r["status"] != "live"], timeout=15)
    assert runs, collector.get("/api/v1/runs")
    return runs[0]["id"]


@pytest.fixture
def known(collector: Collector, tmp_path: Path) -> tuple[Collector, str]:
    return collector, profile(collector, tmp_path, "q-known", KNOWN)


def raw(collector: Collector, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(collector.url(path), timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def child(node: dict, suffix: str) -> dict:
    found = [c for c in node["children"] if c["name"].endswith(suffix)]
    assert len(found) == 1, (suffix, [c["name"] for c in node["children"]])
    return found[0]


def test_flamegraph_is_the_known_call_tree(known) -> None:
    c, run = known
    fg = c.get(c.run_path(run, "flamegraph"))
    assert fg["sample_period"] == pytest.approx(PERIOD)
    main = child(child(fg["root"], ".<module>"), ".main")
    step = child(main, "Worker.step")
    # 11 x 0.05 + 0.25 = 0.8 s of busy work under step(), all of it in busy().
    # A sample stands for at most two periods, so a sampler starved by a
    # loaded machine can only lose time, never invent it.
    assert 0.5 <= step["value"] <= 0.8 + 0.12
    assert child(step, ".busy")["value"] == pytest.approx(step["value"], abs=3 * PERIOD)
    assert child(main, ".slow_sleep")["value"] == pytest.approx(0.3, abs=3 * PERIOD)
    # A window around the sleep alone holds (almost) only the sleep.
    tl = c.get(c.run_path(run, "timeline") + "?width=2000")
    frames = tl["frames"]
    sleep = [x for t in tl["threads"] for x in t["calls"]
             if frames[str(x["frame"])]["name"].endswith("slow_sleep")]
    s, e = sleep[0]["start"], sleep[0]["start"] + sleep[0]["duration"]
    win = c.get(c.run_path(run, "flamegraph") + f"?start={s + 0.05}&end={e - 0.05}")
    names = [n["name"] for n in child(child(win["root"], ".<module>"), ".main")["children"]]
    assert names == [n for n in names if n.endswith("slow_sleep")] and names


def test_a_300ms_sleep_is_one_call(known) -> None:
    c, run = known
    tl = c.get(c.run_path(run, "timeline") + "?width=2000")
    assert tl["sample_period"] == pytest.approx(PERIOD)
    main_thread = [t for t in tl["threads"] if t["name"] == "MainThread"][0]
    frames = tl["frames"]
    sleeps = [x for x in main_thread["calls"] if frames[str(x["frame"])]["name"].endswith("slow_sleep")]
    assert len(sleeps) == 1, sleeps
    assert sleeps[0]["count"] == 1
    # 300 ms plus or minus one sample period (and the sampler's own jitter).
    assert abs(sleeps[0]["duration"] - 0.3) <= PERIOD + 0.005, sleeps[0]
    steps = [x for x in main_thread["calls"] if frames[str(x["frame"])]["name"].endswith("Worker.step")]
    assert len(steps) == 12
    assert frames[str(steps[0]["frame"])]["module"] == "known"


def test_level_of_detail_merges_narrow_calls(known) -> None:
    c, run = known
    tl = c.get(c.run_path(run, "timeline") + "?width=4")
    assert tl["merged"] is True
    main_thread = [t for t in tl["threads"] if t["name"] == "MainThread"][0]
    depth2 = [x for x in main_thread["calls"] if x["depth"] == 2]
    # 12 steps + 12 pauses + 1 sleep in ~1.7 s shown on 4 pixels: a handful of items.
    assert len(depth2) <= 8
    assert sum(x["count"] for x in depth2) >= 24
    assert any(x["count"] > 1 for x in depth2)
    full = c.get(c.run_path(run, "timeline") + "?width=20000")
    assert full["merged"] is False


def test_the_slow_call_is_the_anomaly(known) -> None:
    c, run = known
    calls = c.get(c.run_path(run, "calls") + "?name=known.Worker.step")
    assert len(calls["calls"]) == 12
    assert calls["median"] == pytest.approx(0.05, abs=2 * PERIOD)
    flagged = [x for x in calls["calls"] if x["anomaly"]]
    assert len(flagged) == 1, calls["calls"]
    assert flagged[0]["duration"] == pytest.approx(0.25, abs=2 * PERIOD)
    assert flagged[0]["caller"] == "known.main"
    assert flagged[0]["score"] > 3.5
    top = calls["anomalies"]
    assert top and top[0]["name"] in ("known.Worker.step", "known.busy")
    assert top[0]["start"] == pytest.approx(flagged[0]["start"], abs=2 * PERIOD)


def test_status_log_design_search(known) -> None:
    c, run = known
    st = c.get(c.run_path(run, "status") + "?width=3")["series"]
    assert 1 <= len(st["time"]) <= 3
    assert all(len(st[k]) == len(st["time"]) for k in st)
    assert max(st["rss"]) > 1_000_000 and max(st["modules"]) > 10
    log = c.get(c.run_path(run, "log") + "?q=" + urllib.parse.quote("^all d.ne$"))["events"]
    assert [e["kind"] for e in log] == ["logging"]
    assert log[0]["stack"][-1]["name"] == "known.main" and log[0]["stack"][-1]["line"] > 0
    everything = c.get(c.run_path(run, "log"))["events"]
    late = c.get(c.run_path(run, "log") + f"?start={everything[-1]['time']}")["events"]
    assert late and len(late) < len(everything)
    design = c.get(c.run_path(run, "design"))
    nodes = {n["id"]: n for n in design["nodes"]}
    assert nodes["known.Worker"]["kind"] == "class" and nodes["known"]["kind"] == "module"
    edge = [e for e in design["edges"] if e["source"] == "known" and e["target"] == "known.Worker"]
    assert edge and edge[0]["calls"] >= 12 and edge[0]["time"] == pytest.approx(0.8 + 12 * 0.03, abs=0.15)
    found = c.get(c.run_path(run, "search") + "?q=" + urllib.parse.quote("slow_|printing"))
    assert found["functions"] == ["known.slow_sleep"] and found["calls"] == 1
    assert len(found["log"]) == 1
    assert everything[found["log"][0]]["message"] == "done printing"


def test_exports(known, tmp_path: Path) -> None:
    c, run = known
    status, headers, body = raw(c, c.run_path(run, "export") + "?format=speedscope")
    assert status == 200 and "attachment" in headers["content-disposition"]
    ss = json.loads(body)
    assert ss["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = ss["shared"]["frames"]
    prof = [p for p in ss["profiles"] if p["name"] == "MainThread"][0]
    assert prof["type"] == "sampled" and len(prof["samples"]) == len(prof["weights"]) > 100
    assert all(0 <= i < len(frames) for s in prof["samples"] for i in s)
    assert any(frames[s[-1]]["name"] == "known.slow_sleep" for s in prof["samples"])

    status, _, body = raw(c, c.run_path(run, "export") + "?format=collapsed")
    lines = body.decode().splitlines()
    counts = {}
    for line in lines:
        stack, n = line.rsplit(" ", 1)
        counts[stack] = int(n)
    assert counts["known.<module>;known.main;known.slow_sleep"] == pytest.approx(30, abs=3)

    status, _, body = raw(c, c.run_path(run, "export") + "?format=chrome")
    trace = json.loads(body)
    xs = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {"name", "ts", "dur", "pid", "tid"} <= set(xs[0])
    assert len([e for e in xs if e["name"] == "known.Worker.step"]) == 12
    assert any(e["ph"] == "M" and e["args"]["name"] == "MainThread" for e in trace["traceEvents"])

    status, _, body = raw(c, c.run_path(run, "export") + "?format=pprof")
    assert status == 200 and body[:2] == b"\x1f\x8b"
    data = gzip.decompress(body)
    assert b"known.slow_sleep" in data and b"nanoseconds" in data
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if go:
        path = tmp_path / "profile.pb.gz"
        path.write_bytes(body)
        top = subprocess.run([go, "tool", "pprof", "-top", str(path)], capture_output=True,
                             text=True, timeout=120)
        assert top.returncode == 0, top.stderr
        assert "known.slow_sleep" in top.stdout and "Type: wall" in top.stdout


def test_diff_between_two_runs(collector: Collector, tmp_path: Path) -> None:
    fast = profile(collector, tmp_path, "q-diff", KNOWN)
    slow = profile(collector, tmp_path, "q-diff", KNOWN.replace("time.sleep(0.3)", "time.sleep(0.6)"),
                   name="known.py")
    d = collector.get(collector.run_path(slow, "diff") + "?base=" + urllib.parse.quote(fast, safe=""))
    assert d["base"] == fast
    top = d["functions"][0]
    assert top["name"] in ("known.slow_sleep", "known.main", "known.<module>")
    sleep = [f for f in d["functions"] if f["name"] == "known.slow_sleep"][0]
    assert sleep["delta"] == pytest.approx(0.3, abs=0.05)


def test_bad_input_is_a_clear_error(known) -> None:
    c, run = known
    for query, code in [("timeline?width=0", 400), ("timeline?width=x", 400),
                        ("timeline?start=-1", 400), ("timeline?start=5&end=1", 400),
                        ("flamegraph?threads=1,,2", 400), ("status?end=nan", 400),
                        ("log?q=" + urllib.parse.quote("(a"), 400), ("search", 400),
                        ("search?q=" + urllib.parse.quote("[z-a]"), 400), ("calls", 400),
                        ("export?format=svg", 400), ("diff", 400),
                        ("diff?base=nope%2F2026_01_01_00_00_00", 404), ("nonsense", 404)]:
        status, body = c.request(c.run_path(run, query))
        assert status == code, (query, status, body)
        assert isinstance(body, dict) and body["error"], (query, body)
    status, body = c.request(c.run_path("nobody/2026_01_01_00_00_00", "timeline"))
    assert status == 404 and body["error"]
    # A catastrophic-backtracking pattern is cut by the match limit, not the server.
    evil = urllib.parse.quote("(a+)+$")
    status, body = c.request(c.run_path(run, "log") + "?q=" + evil)
    assert status == 200
    assert c.get("/healthz")["status"] == "ok"


def test_metrics_and_openapi(known) -> None:
    c, run = known
    c.get(c.run_path(run, "timeline"))
    status, headers, body = raw(c, "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["microlog_runs"] == 1 and values["microlog_open_runs"] == 0
    assert values["microlog_ingested_samples_total"] > 100
    assert values["microlog_bytes_stored"] > 0
    assert values['microlog_http_request_duration_seconds_bucket{le="+Inf"}'] >= 2
    # The run queried above is held in memory: its call index is counted.
    assert 0 < values["microlog_query_index_bytes"] <= values["microlog_query_memory_bytes"]
    doc = c.get("/api/v1/openapi.json")
    assert doc["openapi"].startswith("3.")
    for endpoint in ["timeline", "flamegraph", "status", "log", "design", "calls", "search",
                     "export", "diff", "live"]:
        assert f"/api/v1/runs/{{run}}/{endpoint}" in doc["paths"]


def test_live_on_a_finished_run_is_clean_sse(known) -> None:
    """/live on a run that already ended: the whole body is text SSE (no
    stray bytes before the first field), a run event then end, repeatably
    on one keep-alive connection."""
    c, run = known
    for _ in range(3):
        status, headers, body = raw(c, c.run_path(run, "live"))
        assert status == 200 and headers["content-type"] == "text/event-stream"
        assert body.startswith(b"retry: 1000\n\nevent: run\ndata: {"), body[:40]
        text = body.decode("utf-8")  # strict: binary garbage would not decode
        blocks = [b for b in text.split("\n\n") if b]
        assert blocks[0] == "retry: 1000"
        events = []
        for block in blocks[1:]:
            name, data = block.split("\n")
            assert name.startswith("event: ") and data.startswith("data: ")
            events.append((name[7:], json.loads(data[6:])))
        assert [e for e, _ in events] == ["run", "end"]
        assert events[1][1]["id"] == run and events[1][1]["status"] != "live"


LIVE = """
import time

def work(i):
    end = time.perf_counter() + 0.03
    while time.perf_counter() < end:
        pass
    print("tick", i, flush=True)

def rest():
    time.sleep(0.07)

for i in range(40):
    work(i)
    rest()
"""


def test_live_stream_delivers_new_data(collector: Collector, tmp_path: Path) -> None:
    script = tmp_path / "live.py"
    script.write_text(LIVE)
    env = dict(os.environ, MICROLOG_SERVER=collector.http, TRACER_SAMPLE_DELAY="0.01")
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "microlog", "q-live", str(script)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        runs = wait_for(lambda: [r for r in collector.get("/api/v1/runs") if r["label"] == "q-live"],
                        timeout=15)
        assert runs
        run = runs[0]["id"]
        events: list[tuple[str, dict]] = []
        with urllib.request.urlopen(collector.url(collector.run_path(run, "live")), timeout=30) as resp:
            assert resp.headers["content-type"] == "text/event-stream"
            name = None
            for raw_line in resp:
                line = raw_line.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    if name == "end":
                        break
        kinds = {k for k, _ in events}
        assert {"run", "status", "log", "calls", "end"} <= kinds, kinds
        ticks = [e["message"] for k, e in events if k == "log"]
        assert any(m.startswith("tick") for m in ticks)
        # A run that was live answers the ordinary queries too.
        assert collector.get(collector.run_path(run, "timeline"))["threads"]
    finally:
        proc.wait(timeout=30)
