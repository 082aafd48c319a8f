"""Storage crash safety with real processes: micrologd SIGKILLed at random
points of a run, journals torn at random bytes, run.json lost; every
acknowledged batch is recovered and runs whose client never came back end
as incomplete. The client is tests/bench/loadgen_storage.c (real protocol)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD_DIR, SOURCE_DIR, Collector, start_collector, wait_for

SAMPLES_PER_BATCH = 1000


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = Path(os.environ.get("ML_BUILD_DIR", BUILD_DIR))
    # Built by CMake with the build's own flags (sanitizers included).
    built = build / "tests" / "loadgen_storage"
    if built.exists():
        return built
    exe = tmp_path_factory.mktemp("loadgen") / "loadgen_storage"
    subprocess.run(["cc", "-O1", "-o", str(exe), str(SOURCE_DIR / "tests/bench/loadgen_storage.c"),
                    "-I", str(build / "proto/gen"), "-I", str(SOURCE_DIR / "proto"),
                    str(build / "proto/libml_proto.a"), "-lnng", "-lprotobuf-c", "-llz4",
                    "-lpthread"], check=True)
    return exe


def kill_mid_run(loadgen: Path, data: Path, delay: float) -> int:
    """Starts a long run, SIGKILLs the collector delay s after its first
    batch was stored (a fixed time from the start may come before any ack
    on a slow build: TSan under load); returns the samples the client saw
    acknowledged."""
    c = start_collector(data)
    client = subprocess.Popen([str(loadgen), c.ingest, "1", "100000", str(SAMPLES_PER_BATCH)],
                              stdout=subprocess.PIPE, text=True)
    assert wait_for(lambda: ingested(c) > 0, 30), "no batch stored within 30 s"
    time.sleep(delay)
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    out, _ = client.communicate(timeout=60)
    return json.loads(out)["samples"]


def run_dirs(data: Path) -> list[Path]:
    return [p for p in data.glob("runs/local/*/*") if p.is_dir()]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_recovers_every_acked_batch(loadgen: Path, tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    data = tmp_path / "data"
    acked = kill_mid_run(loadgen, data, rnd.uniform(0.2, 1.0))
    assert acked > 0
    (rundir,) = run_dirs(data)
    if seed == 2:
        (rundir / "run.json").unlink()  # lost metadata is rebuilt from the journal
    c = start_collector(data, "--live-timeout", "1")
    try:
        runs = c.get("/api/v1/runs")
        (run,) = [r for r in runs if r["label"].startswith("loadgen-")]
        assert run["samples"] >= acked
        assert run["samples"] % SAMPLES_PER_BATCH == 0
        # The client never comes back: closed as incomplete, then compacted.
        done = wait_for(lambda: c.get(c.run_path(run["id"]))["status"] == "incomplete", 10)
        assert done
        assert wait_for(lambda: (rundir / "recording.mlr").exists()
                        and not (rundir / "journal.mlj").exists(), 10)
        meta = c.get(c.run_path(run["id"]))
        assert meta["samples"] == run["samples"]
    finally:
        assert c.stop() == 0
    # Still served from the recording after another restart.
    c = start_collector(data)
    try:
        (again,) = [r for r in c.get("/api/v1/runs") if r["label"].startswith("loadgen-")]
        assert again["samples"] == run["samples"] and again["status"] == "incomplete"
        status, log = c.request(c.run_path(run["id"], "log"))
        assert status == 200, log
    finally:
        assert c.stop() == 0


def ingested(c: Collector) -> float:
    """The collector's count of samples stored so far."""
    status, text = c.request("/metrics")
    assert status == 200
    (line,) = [l for l in text.splitlines() if l.startswith("microlog_ingested_samples_total ")]
    return float(line.split()[1])


@pytest.mark.parametrize("seed", [4, 5])
def test_sigkill_during_open_burst(loadgen: Path, tmp_path: Path, seed: int) -> None:
    """50 clients open their runs at once (the group commit syncs their
    journals, directories and index log lines together) and the collector
    is SIGKILLed during the burst. After a restart every listed run has its
    journal and the acked samples are all there. A directory whose OpenRun
    was never acknowledged (killed before the group's index-log sync) may
    be left on disk unlisted: start-up reads the index log, not the tree."""
    data = tmp_path / "data"
    c = start_collector(data)
    client = subprocess.Popen([str(loadgen), c.ingest, "50", "100000", "100"],
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, ML_LOADGEN_TIMEOUT_MS="2000"))
    # Into the burst: once a first batch was stored (so at least one
    # OpenRun was acknowledged; under the thread sanitizer that takes
    # longer than any fixed pause), then a random moment later.
    assert wait_for(lambda: ingested(c) > 0, 30), c.log_path.read_text()
    time.sleep(random.Random(seed).uniform(0.0, 0.1))
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    out, _ = client.communicate(timeout=120)
    acked = json.loads(out)["samples"]
    c = start_collector(data)
    try:
        runs = [r for r in c.get("/api/v1/runs") if r["label"].startswith("loadgen-")]
        assert runs, "no run survived: the burst was not reached"
        on_disk = {f"{p.parent.name}/{p.name}" for p in run_dirs(data)}
        assert {r["id"] for r in runs} <= on_disk
        for r in runs:
            assert (data / "runs" / "local" / r["id"] / "journal.mlj").stat().st_size > 4
        assert sum(r["samples"] for r in runs) >= acked
    finally:
        assert c.stop() == 0


def test_torn_tail_at_random_bytes(loadgen: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    kill_mid_run(loadgen, data, 0.5)
    (rundir,) = run_dirs(data)
    journal = rundir / "journal.mlj"
    whole = journal.read_bytes()
    rnd = random.Random(7)
    for cut in sorted(rnd.sample(range(5, len(whole)), 3), reverse=True):
        journal.write_bytes(whole[:cut])
        c = start_collector(data)
        try:
            (run,) = c.get("/api/v1/runs")
            assert run["samples"] % SAMPLES_PER_BATCH == 0
            assert run["samples"] <= (len(whole) // 1) * 1  # sanity: bounded by the data
        finally:
            assert c.stop() == 0
        # The collector cut the torn tail: the file now ends on a record.
        assert journal.stat().st_size <= cut


def test_complete_run_is_compacted_and_served(loadgen: Path, tmp_path: Path) -> None:
    c = start_collector(tmp_path / "data")
    try:
        out = subprocess.run([str(loadgen), c.ingest, "2", "20", str(SAMPLES_PER_BATCH)],
                             capture_output=True, text=True, check=True)
        assert json.loads(out.stdout)["samples"] == 2 * 20 * SAMPLES_PER_BATCH
        dirs = run_dirs(tmp_path / "data")
        assert len(dirs) == 2
        assert wait_for(lambda: all((d / "recording.mlr").exists()
                                    and not (d / "journal.mlj").exists() for d in dirs), 10)
        for r in c.get("/api/v1/runs"):
            assert r["status"] == "complete" and r["samples"] == 20 * SAMPLES_PER_BATCH
            meta = json.loads((tmp_path / "data/runs/local" / r["id"] / "run.json").read_text())
            assert meta["recorded"] and meta["stored_bytes"] < 20 * SAMPLES_PER_BATCH * 4
            status, _ = c.request(c.run_path(r["id"], "log"))
            assert status == 200
    finally:
        assert c.stop() == 0


def test_listing_pages_and_index_log(loadgen: Path, tmp_path: Path) -> None:
    """GET /api/v1/runs pages with offset/limit and reports the total in
    X-Total-Count; a restart reads the index log, and a lost log is
    rebuilt from the run.json files."""
    import urllib.request
    data = tmp_path / "data"
    c = start_collector(data)
    try:
        subprocess.run([str(loadgen), c.ingest, "3", "2", "100"], capture_output=True, text=True,
                       check=True)
        everything = [r["id"] for r in c.get("/api/v1/runs")]
        assert len(everything) == 3
        with urllib.request.urlopen(c.url("/api/v1/runs?offset=1&limit=1"), timeout=10) as resp:
            assert resp.headers["X-Total-Count"] == "3"
            assert [r["id"] for r in json.loads(resp.read())] == everything[1:2]
        with urllib.request.urlopen(c.url("/api/v1/runs?filter=-1%2F&status=complete"),
                                    timeout=10) as resp:
            assert resp.headers["X-Total-Count"] == "1"
        status, body = c.request("/api/v1/runs?status=bogus")
        assert status == 400 and "status" in body["error"]
    finally:
        assert c.stop() == 0
    log = (data / "index.jsonl").read_text().splitlines()
    assert log[0] == '{"microlog_index":1}' and len(log) > 3
    c = start_collector(data)
    try:
        assert [r["id"] for r in c.get("/api/v1/runs")] == everything
    finally:
        assert c.stop() == 0
    (data / "index.jsonl").write_text("not an index\n{}\n")
    c = start_collector(data)
    try:
        assert [r["id"] for r in c.get("/api/v1/runs")] == everything
    finally:
        assert c.stop() == 0
    assert (data / "index.jsonl").read_text().startswith('{"microlog_index":1}')
