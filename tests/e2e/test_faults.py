"""Injected faults with real processes: a client that stalls mid-message, a
SIGTERM under ingest traffic, a SIGTERM during an S3 upload, a client clock that jumps backwards, S3
answering 500s and stalling. Every fault is made with real components: a
real micrologd, the real protocol (loadgen_storage.c over nng, or raw TCP
speaking nng's SP framing), a real moto S3 server behind a fault-injecting
HTTP proxy. docs/hardening.md lists what each proves."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import Collector, start_collector, wait_for
from test_storage import SAMPLES_PER_BATCH, loadgen  # noqa: F401  (fixture)

# SP over TCP (nng's wire format): an 8-byte header 00 'S' 'P' 00, the
# protocol number (REQ v0 = 0x30) big-endian, two reserved bytes; then each
# message is a 64-bit big-endian length and that many bytes.
SP_REQ_HEADER = b"\x00SP\x00\x00\x30\x00\x00"


def ingest_addr(c: Collector) -> tuple[str, int]:
    u = urllib.parse.urlsplit(c.ingest)
    assert u.scheme == "tcp" and u.hostname and u.port
    return u.hostname, u.port


def metrics(c: Collector) -> dict[str, float]:
    status, text = c.request("/metrics")
    assert status == 200
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def run_loadgen(loadgen: Path, c: Collector, clients: int = 2, batches: int = 5,  # noqa: F811
                env: dict[str, str] | None = None, timeout: float = 60) -> dict:
    out = subprocess.run([str(loadgen), c.ingest, str(clients), str(batches),
                          str(SAMPLES_PER_BATCH)], capture_output=True, text=True,
                         env=dict(os.environ, **(env or {})), timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def finish(c: Collector) -> None:
    code = c.stop()
    log = c.log_path.read_text(errors="replace")
    assert code == 0, log
    assert "ERROR: AddressSanitizer" not in log and "runtime error:" not in log, log


def wait_exit(c: Collector, timeout: float) -> int:
    """The collector's exit status; a hang fails with its log."""
    try:
        return c.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"micrologd still running {timeout} s after SIGTERM\n"
                    + c.log_path.read_text(errors="replace"))


def peer_closed(s: socket.socket) -> bool:
    """True once the other end has closed s (EOF or reset)."""
    s.setblocking(False)
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


# --- a client that stalls mid-message -------------------------------------

def test_client_stalled_mid_message_does_not_block_others(loadgen: Path,  # noqa: F811
                                                          collector: Collector) -> None:
    host, port = ingest_addr(collector)
    stalled = []
    for _ in range(3):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(SP_REQ_HEADER)
        assert s.recv(8) == b"\x00SP\x00\x00\x31\x00\x00"  # the REP side answered
        # Half a frame: announces 4096 bytes, sends 100, then nothing.
        s.sendall(struct.pack(">Q", 4096) + b"\x0a" * 100)
        stalled.append(s)
    # A connection stalled inside the SP handshake itself.
    half = socket.create_connection((host, port), timeout=5)
    half.sendall(SP_REQ_HEADER[:4])
    assert wait_for(lambda: metrics(collector)["microlog_ingest_connections"] >= 3, 10)

    # Other clients are served in full while those stay stuck.
    before = metrics(collector)["microlog_ingested_samples_total"]
    res = run_loadgen(loadgen, collector, clients=4, batches=5)
    assert res["samples"] == 4 * 5 * SAMPLES_PER_BATCH and res["failed_clients"] == 0
    assert metrics(collector)["microlog_ingested_samples_total"] == before + res["samples"]
    runs = collector.get("/api/v1/runs")
    assert len(runs) == 4 and all(r["samples"] == 5 * SAMPLES_PER_BATCH for r in runs)

    # nng gives up on an unfinished handshake (its negotiation timeout).
    assert wait_for(lambda: peer_closed(half), 30, 0.5), "half handshake never dropped"
    # The stalled frames are still held (until the idle timeout, 300 s by
    # default: see the next test); closing them from our side frees them.
    for s in stalled:
        s.close()
    assert wait_for(lambda: metrics(collector)["microlog_ingest_connections"] == 0, 10)


def test_client_stalled_mid_message_is_eventually_dropped(tmp_path: Path) -> None:
    # --ingest-idle-timeout: a connection that completed no request for
    # that long is closed, whether it stopped mid-frame or never spoke.
    c = start_collector(tmp_path / "d", "--ingest-idle-timeout", "2")
    try:
        host, port = ingest_addr(c)
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(SP_REQ_HEADER)
        assert s.recv(8) == b"\x00SP\x00\x00\x31\x00\x00"
        s.sendall(struct.pack(">Q", 4096) + b"\x0a" * 100)
        silent = socket.create_connection((host, port), timeout=5)
        silent.sendall(SP_REQ_HEADER)
        assert silent.recv(8) == b"\x00SP\x00\x00\x31\x00\x00"
        assert wait_for(lambda: metrics(c)["microlog_ingest_connections"] == 2, 10)
        try:
            assert wait_for(lambda: peer_closed(s), 20, 0.2), "half frame never dropped"
            assert wait_for(lambda: peer_closed(silent), 20, 0.2), "silent peer never dropped"
        finally:
            s.close()
            silent.close()
        assert metrics(c)["microlog_ingest_idle_closed_total"] >= 2
        assert wait_for(lambda: metrics(c)["microlog_ingest_connections"] == 0, 10)
    finally:
        finish(c)


def test_idle_client_reconnects_after_idle_timeout(loadgen: Path,  # noqa: F811
                                                   tmp_path: Path) -> None:
    # A real client (the load generator: nng REQ dialer, the real protocol)
    # pauses 3 s between batches, three times the idle timeout: its
    # connection is closed while it is idle, its dialer reconnects, and
    # every batch is acknowledged and stored once.
    c = start_collector(tmp_path / "d", "--ingest-idle-timeout", "1")
    try:
        res = run_loadgen(loadgen, c, clients=2, batches=3,
                          env={"ML_LOADGEN_PACE_MS": "3000", "ML_LOADGEN_TIMEOUT_MS": "10000"})
        assert res["samples"] == 2 * 3 * SAMPLES_PER_BATCH and res["failed_clients"] == 0
        m = metrics(c)
        assert m["microlog_ingest_idle_closed_total"] >= 4, m  # each client's, at least twice
        assert m["microlog_ingested_samples_total"] == res["samples"]
        runs = c.get("/api/v1/runs")
        assert len(runs) == 2
        assert all(r["samples"] == 3 * SAMPLES_PER_BATCH and r["status"] == "complete"
                   for r in runs), runs
    finally:
        finish(c)


# --- a client clock that jumps backwards ----------------------------------

def test_sigterm_under_ingest_traffic(loadgen: Path, tmp_path: Path) -> None:  # noqa: F811
    """SIGTERM while 8 clients send as fast as they are acknowledged, again
    and again: micrologd exits 0 promptly every time (nng 1.5 can wait
    forever to close a socket that is receiving; ingest.c closes it on a
    thread of its own and gives up after 5 s), and after a restart every
    acknowledged sample is stored."""
    data = tmp_path / "d"
    acked = clients = 0
    for i in range(30):
        c = start_collector(data)
        try:
            gen = subprocess.Popen([str(loadgen), c.ingest, "8", "100000", str(SAMPLES_PER_BATCH)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=dict(os.environ, ML_LOADGEN_TIMEOUT_MS="1000"))
            assert wait_for(lambda: metrics(c)["microlog_ingested_samples_total"]
                            >= (50 + 50 * (i % 4)) * 100, 30)
            t0 = time.monotonic()
            c.proc.send_signal(signal.SIGTERM)
            code = wait_exit(c, 30)
            took = time.monotonic() - t0
            log = c.log_path.read_text(errors="replace")
            assert code == 0, log
            assert took < 10, (took, log)
            out, err = gen.communicate(timeout=60)
            assert out.strip(), err[-3000:]
            acked += json.loads(out)["samples"]
            clients += 8
        finally:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
    c = start_collector(data)
    try:
        stored = sum(r["samples"] for r in c.get("/api/v1/runs"))
        # Nothing acknowledged is missing; beyond it at most each client's
        # batch in flight at the signal (stored, its ack never sent).
        assert acked <= stored <= acked + clients * SAMPLES_PER_BATCH, (acked, stored)
    finally:
        finish(c)


def test_client_clock_jumps_backwards(loadgen: Path, collector: Collector) -> None:  # noqa: F811
    # Batch 6 of 10 starts 5 s before the previous sample: negative delta,
    # base_time going back. Stored, served, compacted, never a crash.
    res = run_loadgen(loadgen, collector, clients=1, batches=10,
                      env={"ML_LOADGEN_JUMP_US": "-5000000"})
    assert res["samples"] == 10 * SAMPLES_PER_BATCH
    (run,) = collector.get("/api/v1/runs")
    assert run["samples"] == 10 * SAMPLES_PER_BATCH and run["status"] == "complete"
    assert run["duration"] >= 0
    rundir = collector.data_dir / "runs/local" / run["id"]
    assert wait_for((rundir / "recording.mlr").exists, 20)

    def served() -> None:
        meta = collector.get(collector.run_path(run["id"]))
        assert meta["samples"] == 10 * SAMPLES_PER_BATCH
        flame = collector.get(collector.run_path(run["id"], "flamegraph"))
        assert json.dumps(flame)  # a JSON document, not an error
        for q in ("timeline?start=0&end=100&width=500", "timeline?start=-10&end=10&width=100"):
            status, body = collector.request(collector.run_path(run["id"], q))
            assert status in (200, 400), (q, status, body)
            assert isinstance(body, (dict, list)), body
        status, _ = collector.request(collector.run_path(run["id"], "log"))
        assert status == 200

    served()
    # Still the same after a restart from the recording.
    collector.stop()
    again = start_collector(collector.data_dir)
    try:
        collector.proc, collector.http = again.proc, again.http
        served()
    finally:
        finish(again)


# --- S3: SIGTERM during an upload, 500s, stalls -----------------------------

s3mod = pytest.importorskip("test_s3", reason="S3 tests need boto3 and moto[server]")
Moto, free_port, run_keys = s3mod.Moto, s3mod.free_port, s3mod.run_keys
moto, moto_port, s3_env = s3mod.moto, s3mod.moto_port, s3mod.s3_env  # fixtures


class FaultyS3:
    """An HTTP proxy in front of moto. Each new connection is, in order:
    stalled (accepted, read, never answered) while `stall` > 0; answered
    with 500 InternalError for every request while `fail` > 0 (one per
    request); otherwise forwarded byte for byte to moto."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.stall = 0
        self.fail = 0
        self.stalled = 0  # connections stalled so far
        self.failed = 0   # 500s sent
        self.requests_seen: list[str] = []
        self.lock = threading.Lock()
        self.io = s3mod.SocketThreads()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(64)
        self.io.add(self.srv)
        self.io.spawn(self._accept)

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.srv.accept()
            except OSError:
                return
            self.io.add(down)
            with self.lock:
                mode = "stall" if self.stall > 0 else "fail" if self.fail > 0 else "pass"
                if mode == "stall":
                    self.stall -= 1
                    self.stalled += 1
            target = {"stall": self._stall, "fail": self._fail, "pass": self._pass}[mode]
            self.io.spawn(target, down)

    def _stall(self, s: socket.socket) -> None:
        try:
            while data := s.recv(65536):
                with self.lock:
                    if data[:4] in (b"PUT ", b"GET ", b"POST", b"HEAD", b"DELE"):
                        self.requests_seen.append("stalled " + data.split(b"\r\n", 1)[0].decode())
        except OSError:
            pass

    def _fail(self, s: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v.strip())
                expect = b"100-continue" in head.lower()
                if expect and len(buf) < length:
                    s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                while len(buf) < length:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                body = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError"
                        b"</Code><Message>injected</Message></Error>")
                with self.lock:
                    self.requests_seen.append("500 " + head.split(b"\r\n", 1)[0].decode())
                    self.failed += 1
                    self.fail -= 1
                    last = self.fail <= 0
                s.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml"
                          b"\r\nContent-Length: " + str(len(body)).encode() +
                          (b"\r\nConnection: close" if last else b"") + b"\r\n\r\n" + body)
                if last:
                    s.shutdown(socket.SHUT_RDWR)  # closed by close()
                    return
        except OSError:
            pass

    def _pass(self, down: socket.socket) -> None:
        try:
            up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            return
        up.settimeout(None)
        self.io.add(up)
        self.io.spawn(s3mod.pump, up, down)
        s3mod.pump(down, up)

    def close(self) -> None:
        self.io.stop()


def uploaded(c: Collector, rid: str) -> bool:
    meta = c.data_dir / "runs/local" / rid / "run.json"
    return meta.exists() and json.loads(meta.read_text()).get("uploaded") is True


def test_s3_answers_500s_then_recovers(loadgen: Path, tmp_path: Path, moto: Moto,  # noqa: F811
                                       s3_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    moto.start()
    proxy = FaultyS3(moto.port)
    proxy.fail = 6
    monkeypatch.setenv("MICROLOG_S3_ENDPOINT", proxy.endpoint)
    c = start_collector(tmp_path / "a")
    try:
        res = run_loadgen(loadgen, c, clients=1, batches=10)
        (run,) = c.get("/api/v1/runs")
        rid = run["id"]
        assert wait_for(lambda: proxy.failed >= 6, 30), proxy.requests_seen
        # Served from disk meanwhile; the upload is retried until it succeeds.
        assert c.get(c.run_path(rid))["samples"] == res["samples"]
        assert wait_for(lambda: set(run_keys(rid)) <= set(moto.keys()), 60), proxy.requests_seen
        assert wait_for(lambda: uploaded(c, rid), 20)
        local = (c.data_dir / "runs/local" / rid / "recording.mlr").read_bytes()
        obj = moto.client().get_object(Bucket=s3mod.BUCKET, Key=run_keys(rid)[0])["Body"].read()
        assert obj == local
        assert metrics(c)["microlog_s3_errors_total"] >= 1
    finally:
        proxy.close()
        finish(c)


def test_s3_stalls_then_times_out_and_recovers(loadgen: Path, tmp_path: Path,  # noqa: F811
                                               moto: Moto, s3_env: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    moto.start()
    proxy = FaultyS3(moto.port)
    proxy.stall = 2  # the first two connections never get an answer
    monkeypatch.setenv("MICROLOG_S3_ENDPOINT", proxy.endpoint)
    monkeypatch.setenv("MICROLOG_S3_TIMEOUT_MS", "2000")
    c = start_collector(tmp_path / "a")
    try:
        res = run_loadgen(loadgen, c, clients=1, batches=10)
        (run,) = c.get("/api/v1/runs")
        rid = run["id"]
        assert wait_for(lambda: proxy.stalled >= 1, 20)
        # While S3 hangs, the collector keeps taking runs and answering.
        res2 = run_loadgen(loadgen, c, clients=2, batches=5)
        assert res2["failed_clients"] == 0
        assert len(c.get("/api/v1/runs")) == 3
        assert c.get(c.run_path(rid, "flamegraph"))
        # The stalled requests time out and are retried through.
        assert wait_for(lambda: set(run_keys(rid)) <= set(moto.keys()), 60), proxy.requests_seen
        assert wait_for(lambda: uploaded(c, rid), 20)
        obj = moto.client().get_object(Bucket=s3mod.BUCKET, Key=run_keys(rid)[0])["Body"].read()
        assert obj == (c.data_dir / "runs/local" / rid / "recording.mlr").read_bytes()
        assert c.get(c.run_path(rid))["samples"] == res["samples"]
    finally:
        proxy.close()
        finish(c)


def test_sigterm_during_s3_upload(loadgen: Path, tmp_path: Path, moto: Moto,  # noqa: F811
                                  s3_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    moto.start()
    proxy = FaultyS3(moto.port)
    proxy.stall = 1000  # every S3 request hangs: the upload is in flight at SIGTERM
    monkeypatch.setenv("MICROLOG_S3_ENDPOINT", proxy.endpoint)
    data = tmp_path / "a"
    # --drain-timeout: at SIGTERM, uploads in flight get 3 s, then are aborted.
    c = start_collector(data, "--drain-timeout", "3")
    try:
        run_loadgen(loadgen, c, clients=1, batches=10)
        (run,) = c.get("/api/v1/runs")
        rid = run["id"]
        assert wait_for(lambda: any(r.startswith("stalled PUT") for r in proxy.requests_seen),
                        30), proxy.requests_seen
        # A second client is mid-run when the signal comes.
        live = subprocess.Popen([str(loadgen), c.ingest, "1", "100000", str(SAMPLES_PER_BATCH)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, ML_LOADGEN_LABEL="live"))
        assert wait_for(lambda: metrics(c)["microlog_ingested_samples_total"]
                        >= run["samples"] + 5 * SAMPLES_PER_BATCH, 30)
        t0 = time.monotonic()
        c.proc.send_signal(signal.SIGTERM)
        # A hanging S3 holds the shutdown for the drain timeout only (the
        # wait below is a hang guard, far above it).
        code = wait_exit(c, 60)
        took = time.monotonic() - t0
        log = c.log_path.read_text(errors="replace")
        assert code == 0, log
        assert "upload(s) still in flight after 3000 ms; aborting them" in log, log
        assert 2.5 <= took < 20, (took, log)
        out, _ = live.communicate(timeout=60)
        acked = json.loads(out)["samples"]
        assert acked >= 5 * SAMPLES_PER_BATCH
        assert not uploaded(c, rid)
    finally:
        proxy.close()
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()
    # Restarted with S3 working: the interrupted upload completes and
    # nothing the clients saw acknowledged is missing.
    monkeypatch.setenv("MICROLOG_S3_ENDPOINT", moto.endpoint)
    c = start_collector(data)
    try:
        assert wait_for(lambda: set(run_keys(rid)) <= set(moto.keys()), 60), moto.keys()
        assert wait_for(lambda: uploaded(c, rid), 20)
        obj = moto.client().get_object(Bucket=s3mod.BUCKET, Key=run_keys(rid)[0])["Body"].read()
        assert obj == (data / "runs/local" / rid / "recording.mlr").read_bytes()
        runs = {r["label"]: r for r in c.get("/api/v1/runs")}
        assert runs[run["label"]]["samples"] == run["samples"]
        # Every acknowledged batch of the interrupted run is there; at most
        # the one in flight at the signal was stored without its ack reaching
        # the client.
        got = runs["live"]["samples"]
        assert acked <= got <= acked + SAMPLES_PER_BATCH, (acked, got)
    finally:
        finish(c)
