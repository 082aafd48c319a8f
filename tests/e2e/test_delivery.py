"""Delivery that loses nothing: a real C client (tests/bench/ml_drive.c, linked
with libmicrolog) against real micrologd processes that are late, killed,
stalled or unreachable. In each case every sample, status tick and log line
the client counted (MICROLOG_DEBUG_COUNTS) is stored exactly once, and the
program's exit status and output are its own. Bad input to the ingest port
is refused with a logged reason while other clients are still served."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import BUILD_DIR, Collector, start_collector, wait_for

ML_DRIVE = os.environ.get("ML_DRIVE", str(BUILD_DIR / "tests" / "ml_drive"))

pytestmark = pytest.mark.skipif(not Path(ML_DRIVE).exists(), reason="ml_drive not built")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Drive:
    """One ml_drive process recording `samples` samples at `rate` Hz."""

    def __init__(self, tmp: Path, server: str, samples: int, rate: float, *extra: str,
                 spool: Path | None = None, exit_code: int = 7, env: dict | None = None):
        self.counts = tmp / f"counts-{time.monotonic_ns()}.jsonl"
        self.spool = spool or tmp / "spool"
        self.samples = samples
        self.exit_code = exit_code
        env = dict(os.environ, MICROLOG_DEBUG_COUNTS=str(self.counts),
                   MICROLOG_SPOOL_DIR=str(self.spool), MICROLOG_AUTOSTART="0", **(env or {}))
        self.proc = subprocess.Popen(
            [ML_DRIVE, "--server", server, "--samples", str(samples), "--rate", str(rate),
             "--log-every", "10", "--status-every", "25", "--exit", str(exit_code), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def finish(self, timeout: float = 60) -> dict:
        out, err = self.proc.communicate(timeout=timeout)
        self.stderr = err
        # the program's own output and exit status, untouched
        assert self.proc.returncode == self.exit_code, err
        assert out.splitlines() == [f"log {i}" for i in range(0, self.samples, 10)], err
        lines = self.counts.read_text().splitlines()
        assert len(lines) == 1
        counts = json.loads(lines[0])
        assert counts["samples"] == self.samples
        assert counts["dropped_samples"] == 0 and counts["dropped_logs"] == 0, counts
        return counts


def assert_stored_once(c: Collector, counts: dict) -> None:
    """The stored run has exactly what the client recorded."""
    run_id = counts["run_id"]

    def complete():
        status, body = c.request(c.run_path(run_id))
        return status == 200 and body.get("status") == "complete" and body
    meta = wait_for(complete, timeout=20)
    assert meta, (run_id, c.request(c.run_path(run_id)), c.log_path.read_text()[-3000:])
    assert meta["samples"] == counts["samples"], meta
    assert meta["logs"] == counts["logs"], meta
    log = c.get(c.run_path(run_id, "log"))
    events = log["events"] if isinstance(log, dict) else log
    messages = [e["message"] for e in events if e.get("message", "").startswith("log ")]
    assert sorted(messages) == sorted(f"log {i}" for i in range(0, counts["samples"], 10))
    times = stored_status_times(c, run_id)
    assert len(times) == counts["statuses"], times[:5]
    assert len(set(times)) == len(times), "a status tick is stored twice"


def stored_status_times(c: Collector, run_id: str) -> list[float]:
    """Every stored status tick's time. The status endpoint buckets a
    window into at most 20000 points, so two ticks closer than
    window/20000 share a point (a loaded machine bunches ticks when the
    program catches up). Windows of 20 ms make a bucket at most 1 us, the
    resolution of a tick's time: each stored tick is one point. The last
    window is open-ended so that no tick, however late, is left out."""
    step = 0.02
    meta = c.get(c.run_path(run_id))
    last = int(meta.get("duration", 0) / step) + 1
    times: list[float] = []
    for k in range(last + 1):
        start, end = k * step, ((k + 1) * step if k < last else 1e8)
        got = c.get(c.run_path(run_id, "status") + f"?width=20000&start={start:.6f}&end={end:.6f}")
        times += got["series"]["time"]
    return times


def test_collector_started_later(tmp_path: Path) -> None:
    port = free_port()
    drive = Drive(tmp_path, f"http://127.0.0.1:{port}", 1500, 500)  # 3 s
    time.sleep(1.0)
    c = start_collector(tmp_path / "data", "--http", f"127.0.0.1:{port}")
    try:
        counts = drive.finish()
        assert counts["delivered"] and not counts["spooled"], (counts, drive.stderr)
        assert drive.stderr == ""
        assert_stored_once(c, counts)
    finally:
        assert c.stop() == 0


def test_collector_killed_and_restarted(tmp_path: Path) -> None:
    http, ingest = free_port(), f"tcp://127.0.0.1:{free_port()}"
    args = ("--http", f"127.0.0.1:{http}", "--ingest", ingest)
    c = start_collector(tmp_path / "data", *args)
    drive = Drive(tmp_path, f"http://127.0.0.1:{http}", 2000, 500, "--close-timeout", "8000")
    time.sleep(1.0)
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    time.sleep(1.5)
    c = start_collector(tmp_path / "data", *args)
    try:
        counts = drive.finish()
        assert counts["delivered"], (counts, drive.stderr)
        assert_stored_once(c, counts)
    finally:
        assert c.stop() == 0


def test_collector_back_on_another_ingest_port(tmp_path: Path) -> None:
    """The collector is killed and comes back with the same HTTP address
    but a new ingest port: the client looks the ingest address up again
    after its requests keep failing with no connection, and delivers the
    whole run live (nothing spooled)."""
    http = free_port()
    old_ingest, new_ingest = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    c = start_collector(tmp_path / "data", "--http", f"127.0.0.1:{http}", "--ingest", old_ingest)
    assert c.ingest == old_ingest
    drive = Drive(tmp_path, f"http://127.0.0.1:{http}", 3000, 500, "--close-timeout", "20000")
    time.sleep(1.0)
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    time.sleep(0.5)
    c = start_collector(tmp_path / "data", "--http", f"127.0.0.1:{http}", "--ingest", new_ingest)
    try:
        assert c.ingest == new_ingest
        counts = drive.finish()
        assert counts["delivered"] and not counts["spooled"], (counts, drive.stderr)
        assert drive.stderr == ""
        assert_stored_once(c, counts)
    finally:
        assert c.stop() == 0


def test_collector_stalled(tmp_path: Path, collector: Collector) -> None:
    drive = Drive(tmp_path, collector.http, 2500, 500, "--close-timeout", "8000")  # 5 s
    time.sleep(0.8)
    collector.proc.send_signal(signal.SIGSTOP)
    time.sleep(3.0)
    collector.proc.send_signal(signal.SIGCONT)
    counts = drive.finish()
    assert counts["delivered"], (counts, drive.stderr)
    assert_stored_once(collector, counts)


def test_last_batch_rides_in_close_run(tmp_path: Path, collector: Collector) -> None:
    """At the end of a run the last batch travels inside CloseRun
    (final_batch): one round trip and one journal sync less. Each reply is
    one ack: OpenRun, every batch but the last, and the folded CloseRun
    (without folding there would be one more). Stored exactly once and
    complete, for a run of one batch and a run of several."""
    for samples, rate in ((20, 1000), (600, 1000)):
        counts = Drive(tmp_path, collector.http, samples, rate).finish()
        assert counts["delivered"] and not counts["spooled"], counts
        assert counts["batches_acked"] == counts["batches_sent"] >= 1, counts
        assert counts["acks"] == counts["batches_acked"] + 1, counts
        assert_stored_once(collector, counts)
        log = collector.log_path.read_text()
        assert log.count(f"run {counts['run_id']} closed: complete") == 1, log[-3000:]


def test_network_cut_longer_than_buffer(tmp_path: Path) -> None:
    """A 4 KiB buffer and no collector for the whole run: spooled, then
    imported by the machine's collector when it starts."""
    port = free_port()
    spool = tmp_path / "spool"
    drive = Drive(tmp_path, f"http://127.0.0.1:{port}", 3000, 2000, "--buffer", "4096",
                  "--close-timeout", "300", spool=spool)
    counts = drive.finish()
    assert counts["spooled"] and not counts["delivered"], counts
    files = list(spool.glob("*.mlspool"))
    assert len(files) == 1
    assert f"run saved to {files[0]}" in drive.stderr
    assert f"it will appear at http://127.0.0.1:{port}/#{counts['run_id']}" in drive.stderr
    assert drive.stderr.count("\n") == 1
    c = start_collector(tmp_path / "data", "--http", f"127.0.0.1:{port}", "--spool-dir",
                        str(spool))
    try:
        assert_stored_once(c, counts)
        assert wait_for(lambda: not list(spool.glob("*.mlspool")), timeout=10)
        assert "spool: imported" in c.log_path.read_text()
    finally:
        assert c.stop() == 0


def test_cut_mid_run_then_delivered_by_spool(tmp_path: Path) -> None:
    """Collector reachable at first, then gone past the buffer, back later:
    the first part was delivered live, the rest completes it from the spool,
    nothing twice."""
    http, ingest = free_port(), f"tcp://127.0.0.1:{free_port()}"
    args = ("--http", f"127.0.0.1:{http}", "--ingest", ingest)
    spool = tmp_path / "spool"
    c = start_collector(tmp_path / "data", *args)
    drive = Drive(tmp_path, c.http, 3000, 1000, "--buffer", "4096", "--close-timeout", "300",
                  spool=spool)
    time.sleep(0.8)
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    counts = drive.finish()
    assert counts["spooled"] and counts["batches_acked"] > 0, counts
    c = start_collector(tmp_path / "data", *args, "--spool-dir", str(spool))
    try:
        assert_stored_once(c, counts)
    finally:
        assert c.stop() == 0


def test_leftover_spool_delivered_by_next_client(tmp_path: Path, collector: Collector) -> None:
    """The next run for the same server delivers an earlier spooled run
    (here: of a spool-only process) while it records, and removes the file."""
    spool = tmp_path / "spool"
    first = Drive(tmp_path, collector.http, 200, 2000, "--spool-only", spool=spool)
    first_counts = first.finish()
    assert first_counts["spooled"], first_counts
    assert "this process does not use the network" in first.stderr
    assert len(list(spool.glob("*.mlspool"))) == 1
    # a different start second: the spooled run keeps its provisional id
    # (two runs of one label in one second get "-2" in arrival order)
    time.sleep(1.1)
    second = Drive(tmp_path, collector.http, 2000, 500, spool=spool)  # 4 s: scans once
    counts = second.finish()
    assert counts["delivered"] and counts["leftover_files"] == 1, counts
    assert not list(spool.glob("*.mlspool"))
    assert_stored_once(collector, first_counts)
    assert_stored_once(collector, counts)


# ---- bad input ---------------------------------------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def envelope(version: int, method: str, call_id: int, payload: bytes = b"") -> bytes:
    m = method.encode()
    return (varint(1 << 3) + varint(version) + varint(2 << 3 | 2) + varint(len(m)) + m +
            varint(3 << 3) + varint(call_id) + varint(8 << 3 | 2) + varint(len(payload)) +
            payload)


def send_raw(tmp: Path, ingest: str, data: bytes) -> str:
    path = tmp / f"raw-{time.monotonic_ns()}.bin"
    path.write_bytes(data)
    proc = subprocess.run([ML_DRIVE, "--ingest", ingest, "--raw", str(path)],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip()


def test_bad_input_is_refused_and_others_served(tmp_path: Path, collector: Collector) -> None:
    ing = collector.ingest
    good = envelope(1, "microlog.v1.Ingest/Batch", 5)
    cases = {
        "garbage": (os.urandom(64) + b"\xff" * 32, "status 3: malformed envelope"),
        "truncated": (envelope(1, "microlog.v1.Ingest/OpenRun", 9, b"x" * 100)[:40],
                      "status 3: malformed envelope"),
        "absurd length": (varint(8 << 3 | 2) + varint(1 << 40), "status 3: malformed envelope"),
        "unknown method": (envelope(1, "microlog.v1.Ingest/Nope", 3),
                           'status 12: unknown method "microlog.v1.Ingest/Nope"'),
        "unknown version": (envelope(99, "microlog.v1.Ingest/OpenRun", 4),
                            "status 9: unsupported protocol version 99 (want 1)"),
        "bad batch": (good + b"", "status 5: unknown run_uid"),
        "too large": (b"\x00" * (17 << 20), "no reply"),
    }
    for name, (data, want) in cases.items():
        got = send_raw(tmp_path, ing, data)
        assert got.startswith(want), (name, got)
    # raw TCP garbage (not even the SP handshake) is dropped by nng
    host, port = urllib.parse.urlparse(ing.replace("tcp://", "http://")).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(os.urandom(4096))
    # every other client is still served, and every refusal has a reason in the log
    drive = Drive(tmp_path, collector.http, 300, 3000)
    counts = drive.finish()
    assert counts["delivered"], (counts, drive.stderr)
    assert_stored_once(collector, counts)
    log = collector.log_path.read_text()
    for reason in ("malformed envelope", "unknown method", "unsupported protocol version 99"):
        assert reason in log, reason
    assert collector.proc.poll() is None
