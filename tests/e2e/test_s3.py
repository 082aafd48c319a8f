"""S3 storage against a real S3-compatible server (moto in server mode, a
separate process on a free port; never a mock, never AWS): upload after a
run, many collectors over one bucket, multipart, S3 down during a run and
back later, DELETE everywhere."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any
from typing import Iterator

import pytest

from conftest import Collector, start_collector, wait_for
from test_storage import SAMPLES_PER_BATCH, loadgen  # noqa: F401  (fixture)

boto3 = pytest.importorskip("boto3", reason="boto3 (with moto[server]) is needed for S3 tests")
pytest.importorskip("moto", reason="moto[server] (tests/requirements.txt) is needed for S3 tests")

BUCKET = "microlog-test"
PREFIX = "team-data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """A moto S3 server process that can be stopped and started again."""

    def __init__(self, port: int, log: Path) -> None:
        self.key, self.secret = "testing", "testing"
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = f"http://127.0.0.1:{port}"

    def start(self, auth: bool = False) -> None:
        """auth: moto checks every request's SigV4 signature against an IAM
        access key created here (self.key/self.secret)."""
        env = dict(os.environ, S3_UPLOAD_PART_MIN_SIZE="1024")
        if auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"  # the three IAM calls below
        env.pop("AWS_PROFILE", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start: {self.log.read_text()}")
                time.sleep(0.1)
        if auth:
            iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                               aws_access_key_id="x", aws_secret_access_key="x")
            iam.create_user(UserName="microlog")
            iam.put_user_policy(UserName="microlog", PolicyName="all", PolicyDocument=json.dumps(
                {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
            k = iam.create_access_key(UserName="microlog")["AccessKey"]
            self.key, self.secret = k["AccessKeyId"], k["SecretAccessKey"]
        self.client().create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret)

    def keys(self) -> list[str]:
        try:
            out = self.client().list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "/")
        except Exception:
            return []
        return sorted(o["Key"] for o in out.get("Contents", []))


@pytest.fixture
def moto_port() -> int:
    return free_port()


@pytest.fixture
def moto(tmp_path: Path, moto_port: int) -> Iterator[Moto]:
    m = Moto(moto_port, tmp_path / "moto.log")
    yield m
    m.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, moto_port: int) -> None:
    monkeypatch.setenv("MICROLOG_S3_ROOT", f"s3://{BUCKET}/{PREFIX}/")
    monkeypatch.setenv("MICROLOG_S3_REGION", "us-east-1")
    monkeypatch.setenv("MICROLOG_S3_ENDPOINT", f"http://127.0.0.1:{moto_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def finish(*collectors: Collector) -> None:
    for c in collectors:
        code = c.stop()
        log = c.log_path.read_text(errors="replace")
        assert code == 0, log
        assert "ERROR: AddressSanitizer" not in log and "runtime error:" not in log, log


def one_run(loadgen: Path, c: Collector, batches: int = 10) -> str:  # noqa: F811
    before = {r["id"] for r in c.get("/api/v1/runs")}
    subprocess.run([str(loadgen), c.ingest, "1", str(batches), str(SAMPLES_PER_BATCH)],
                   capture_output=True, text=True, check=True)
    (rid,) = [r["id"] for r in c.get("/api/v1/runs") if r["id"] not in before]
    return rid


def run_keys(rid: str) -> list[str]:
    return [f"{PREFIX}/runs/local/{rid}/recording.mlr", f"{PREFIX}/runs/local/{rid}/run.json"]


def test_upload_and_second_collector_serves(loadgen: Path, tmp_path: Path, moto: Moto,  # noqa: F811
                                            s3_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server checks signatures: a request our SigV4 got wrong fails.
    moto.start(auth=True)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.secret)
    a = start_collector(tmp_path / "a")
    b = None
    try:
        rid = one_run(loadgen, a)
        assert wait_for(lambda: set(run_keys(rid)) <= set(moto.keys()), 20), moto.keys()
        local = (tmp_path / "a/runs/local" / rid / "recording.mlr").read_bytes()
        obj = moto.client().get_object(Bucket=BUCKET, Key=run_keys(rid)[0])["Body"].read()
        assert obj == local
        meta = json.loads((tmp_path / "a/runs/local" / rid / "run.json").read_text())
        assert meta["uploaded"] is True

        # A second collector, its own data dir, the same bucket.
        b = start_collector(tmp_path / "b", "--s3-list-interval", "0.5")
        assert wait_for(lambda: rid in {r["id"] for r in b.get("/api/v1/runs")}, 20)
        listed = [r for r in b.get("/api/v1/runs") if r["id"] == rid][0]
        assert listed["status"] == "complete" and listed["samples"] == 10 * SAMPLES_PER_BATCH
        cached = tmp_path / "b/runs/local" / rid / "recording.mlr"
        assert not cached.exists()  # fetched on first read, not before
        for endpoint in ("flamegraph", "log"):
            assert b.get(b.run_path(rid, endpoint)) == a.get(a.run_path(rid, endpoint))
        meta_a, meta_b = a.get(a.run_path(rid)), b.get(b.run_path(rid))
        assert meta_b.pop("remote") is True and meta_a.pop("remote") is False
        assert meta_b == meta_a
        assert cached.read_bytes() == local
    finally:
        finish(a, *([b] if b else []))


def test_multipart_upload(loadgen: Path, tmp_path: Path, moto: Moto, s3_env: None,  # noqa: F811
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROLOG_S3_MULTIPART_BYTES", "2048")
    # Credentials from the shared credentials file this time (a profile).
    # The server checks signatures, so the wrong profile's key would fail.
    moto.start(auth=True)
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n"
                     f"[ci]\naws_access_key_id = {moto.key}\n"
                     f"aws_secret_access_key = {moto.secret}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "ci")
    a = start_collector(tmp_path / "a")
    monkeypatch.delenv("AWS_PROFILE")  # the collector has read it; boto3 must not
    try:
        rid = one_run(loadgen, a, batches=20)
        assert wait_for(lambda: set(run_keys(rid)) <= set(moto.keys()), 20), moto.keys()
        assert "SignatureDoesNotMatch" not in a.log_path.read_text()
        local = (tmp_path / "a/runs/local" / rid / "recording.mlr").read_bytes()
        assert len(local) > 2 * 2048
        head = moto.client().head_object(Bucket=BUCKET, Key=run_keys(rid)[0])
        parts = -(-len(local) // 2048)
        assert head["ETag"].strip('"').endswith(f"-{parts}")  # a multipart object
        obj = moto.client().get_object(Bucket=BUCKET, Key=run_keys(rid)[0])["Body"].read()
        assert obj == local
    finally:
        finish(a)


def test_s3_down_during_run_uploaded_later(loadgen: Path, tmp_path: Path, moto: Moto,  # noqa: F811
                                           s3_env: None) -> None:
    # No S3 server yet: the run is taken, compacted and served from disk.
    a = start_collector(tmp_path / "a")
    try:
        rid = one_run(loadgen, a)
        rec = tmp_path / "a/runs/local" / rid / "recording.mlr"
        assert wait_for(rec.exists, 20)
        assert a.get(a.run_path(rid))["samples"] == 10 * SAMPLES_PER_BATCH
        flame = a.get(a.run_path(rid, "flamegraph"))
        meta = json.loads((tmp_path / "a/runs/local" / rid / "run.json").read_text())
        assert meta["uploaded"] is False
        # S3 comes back: the upload is retried until it succeeds.
        moto.start()
        assert wait_for(lambda: set(run_keys(rid)) <= set(moto.keys()), 60), moto.keys()
        obj = moto.client().get_object(Bucket=BUCKET, Key=run_keys(rid)[0])["Body"].read()
        assert obj == rec.read_bytes()
        assert wait_for(lambda: json.loads(
            (tmp_path / "a/runs/local" / rid / "run.json").read_text())["uploaded"], 10)
        assert a.get(a.run_path(rid, "flamegraph")) == flame
        # Killed again: reads still come from the local disk.
        moto.stop()
        assert a.get(a.run_path(rid, "flamegraph")) == flame
    finally:
        finish(a)


def test_s3_killed_then_restarted_survives_collector_restart(
        loadgen: Path, tmp_path: Path, moto: Moto, s3_env: None) -> None:  # noqa: F811
    # The collector stops before S3 returns: the pending upload survives
    # the restart (run.json says uploaded: false) and completes later.
    a = start_collector(tmp_path / "a")
    rid = one_run(loadgen, a)
    assert wait_for((tmp_path / "a/runs/local" / rid / "recording.mlr").exists, 20)
    finish(a)
    moto.start()
    a = start_collector(tmp_path / "a")
    try:
        assert wait_for(lambda: set(run_keys(rid)) <= set(moto.keys()), 30), moto.keys()
    finally:
        finish(a)


def test_delete_removes_everywhere(loadgen: Path, tmp_path: Path, moto: Moto,  # noqa: F811
                                   s3_env: None) -> None:
    moto.start()
    a = start_collector(tmp_path / "a")
    b = start_collector(tmp_path / "b", "--s3-list-interval", "0.5")
    try:
        rid = one_run(loadgen, a)
        keep = one_run(loadgen, a)
        assert wait_for(lambda: set(run_keys(rid) + run_keys(keep)) <= set(moto.keys()), 20)
        assert wait_for(lambda: {rid, keep} <= {r["id"] for r in b.get("/api/v1/runs")}, 20)
        status, _ = a.request(a.run_path(rid), method="DELETE")
        assert status == 204
        assert wait_for(lambda: not set(run_keys(rid)) & set(moto.keys()), 20), moto.keys()
        assert set(run_keys(keep)) <= set(moto.keys())
        assert not (tmp_path / "a/runs/local" / rid).exists()
        # The other collector learns it at its next listing.
        assert wait_for(lambda: rid not in {r["id"] for r in b.get("/api/v1/runs")}, 20)
        assert keep in {r["id"] for r in b.get("/api/v1/runs")}
        status, _ = b.request(b.run_path(rid))
        assert status == 404
        # A remote run deleted through the collector that did not ingest it.
        status, _ = b.request(b.run_path(keep), method="DELETE")
        assert status == 204
        assert wait_for(lambda: not set(run_keys(keep)) & set(moto.keys()), 20), moto.keys()
        assert wait_for(lambda: keep not in {r["id"] for r in a.get("/api/v1/runs")}, 60)
    finally:
        finish(a, b)


def test_bad_s3_configuration_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    from conftest import MICROLOGD
    monkeypatch.setenv("MICROLOG_S3_ROOT", "bucket-without-scheme")
    out = subprocess.run([MICROLOGD, "--data-dir", str(tmp_path), "--http", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "s3://bucket/prefix" in out.stderr
    monkeypatch.setenv("MICROLOG_S3_ROOT", "s3://b/p")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing"))
    out = subprocess.run([MICROLOGD, "--data-dir", str(tmp_path), "--http", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "credentials" in out.stderr


class SocketThreads:
    """The sockets of a test's TCP proxy and the threads that use them.
    stop() shuts the sockets down (which wakes accept() and recv()), joins
    the threads and only then closes the sockets: a close under another
    thread's recv() is a race the thread sanitizer reports (make test-tsan
    preloads it into this interpreter)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.threads: list[threading.Thread] = []

    def add(self, sock: socket.socket) -> None:
        with self.lock:
            self.socks.append(sock)

    def spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self.lock:
            self.threads.append(thread)
        thread.start()

    def stop(self) -> None:
        closing: list[socket.socket] = []
        while True:  # the threads joined may have added sockets and threads
            with self.lock:
                socks, self.socks = self.socks, []
                threads, self.threads = self.threads, []
            if not socks and not threads:
                break
            for sock in socks:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            closing += socks
            for thread in threads:
                thread.join(timeout=10)
        for sock in closing:
            sock.close()


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Forwards src to dst until either ends, then shuts both down."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Proxy:
    """A TCP forwarder in front of moto: stopping it makes S3 unreachable
    (connections refused) while moto keeps its objects, which a moto
    restart would lose."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.io: SocketThreads | None = None

    def start(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self.io = io = SocketThreads()
        io.add(srv)
        io.spawn(self._accept, srv, io)

    def _accept(self, srv: socket.socket, io: SocketThreads) -> None:
        while True:
            try:
                down, _ = srv.accept()
            except OSError:
                return
            io.add(down)
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                continue
            up.settimeout(None)
            io.add(up)
            for a, b in ((down, up), (up, down)):
                io.spawn(pump, a, b)

    def stop(self) -> None:
        io, self.io = self.io, None
        if io is not None:
            io.stop()


def metrics(c: Collector) -> dict[str, float]:
    status, text = c.request("/metrics")
    assert status == 200
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_two_collectors_same_label_same_second_get_distinct_ids(
        loadgen: Path, tmp_path: Path, moto: Moto, s3_env: None) -> None:  # noqa: F811
    # Two collectors over one bucket take a run of the same label stamped
    # with the same second at the same time: the ids (and so the S3 keys)
    # must differ, and each collector must list and serve the other's run.
    moto.start()
    a = start_collector(tmp_path / "a", "--collector-id", "1", "--s3-list-interval", "0.5")
    b = start_collector(tmp_path / "b", "--collector-id", "2", "--s3-list-interval", "0.5")
    env = dict(os.environ, ML_LOADGEN_LABEL="same")
    try:
        gens = [subprocess.Popen([str(loadgen), c.ingest, "1", "10", str(SAMPLES_PER_BATCH)],
                                 stdout=subprocess.PIPE, text=True, env=env) for c in (a, b)]
        for g in gens:
            g.communicate(timeout=60)
            assert g.returncode == 0
        # Each collector's own run (the list may already hold the other's,
        # listed from S3: its run JSON says "remote").
        (ra,) = [r["id"] for r in a.get("/api/v1/runs") if not a.get(a.run_path(r["id"]))["remote"]]
        (rb,) = [r["id"] for r in b.get("/api/v1/runs") if not b.get(b.run_path(r["id"]))["remote"]]
        # The loadgen stamps every run 2026_01_01_00_00_00.
        assert ra == "same/2026_01_01_00_00_00" and rb == "same/2026_01_01_00_00_00-2"
        assert wait_for(lambda: set(run_keys(ra) + run_keys(rb)) <= set(moto.keys()), 20)
        for c in (a, b):
            assert wait_for(lambda: {ra, rb} <= {r["id"] for r in c.get("/api/v1/runs")}, 20)
        for rid, owner, other in ((ra, a, b), (rb, b, a)):
            assert other.get(other.run_path(rid, "flamegraph")) == \
                owner.get(owner.run_path(rid, "flamegraph"))
            obj = moto.client().get_object(Bucket=BUCKET, Key=run_keys(rid)[0])["Body"].read()
            assert obj == (owner.data_dir / "runs/local" / rid / "recording.mlr").read_bytes()
        # A's next run of that label in that second: the next stamp of its
        # own class (-101), never one B could pick (-2, -102, ...).
        subprocess.run([str(loadgen), a.ingest, "1", "2", str(SAMPLES_PER_BATCH)],
                       capture_output=True, text=True, check=True, env=env)
        assert wait_for(lambda: "same/2026_01_01_00_00_00-101" in
                        {r["id"] for r in a.get("/api/v1/runs")}, 20)
    finally:
        finish(a, b)


def test_collector_id_is_checked(tmp_path: Path) -> None:
    from conftest import MICROLOGD
    for bad in ("0", "100", "x", "-1"):
        out = subprocess.run([MICROLOGD, "--data-dir", str(tmp_path), "--http", "127.0.0.1:0",
                              "--collector-id", bad], capture_output=True, text=True, timeout=10)
        assert out.returncode == 2 and "--collector-id" in out.stderr, out.stderr


def test_delete_while_s3_down_is_retried_after_a_restart(
        loadgen: Path, tmp_path: Path, moto: Moto, s3_env: None,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    moto.start()
    proxy = Proxy(moto.port)
    proxy.start()
    monkeypatch.setenv("MICROLOG_S3_ENDPOINT", proxy.endpoint)
    a = start_collector(tmp_path / "a")
    try:
        rid = one_run(loadgen, a)
        keep = one_run(loadgen, a)
        assert wait_for(lambda: set(run_keys(rid) + run_keys(keep)) <= set(moto.keys()), 20)
        proxy.stop()  # S3 unreachable from here on
        status, _ = a.request(a.run_path(rid), method="DELETE")
        assert status == 204
        assert not (tmp_path / "a/runs/local" / rid).exists()
        pending = tmp_path / "a/s3-pending-deletes"
        assert pending.read_text().split() == run_keys(rid)[::-1]  # run.json first
        assert wait_for(lambda: "cannot delete" in a.log_path.read_text(), 30)
        m = metrics(a)
        assert m["microlog_s3_pending_deletes"] == 2
        assert m["microlog_s3_errors_total"] >= 1 and m["microlog_s3_requests_total"] >= 4
        kept = (tmp_path / "a/runs/local" / keep / "recording.mlr").stat().st_size
        assert m["microlog_bytes_stored"] == kept
        assert m["microlog_s3_bytes_uploaded_total"] >= kept
        # Killed before S3 comes back: nothing but the pending file remembers.
        a.proc.kill()
        a.proc.wait()
        assert set(run_keys(rid)) <= set(moto.keys())
        proxy.start()
        a = start_collector(tmp_path / "a", "--s3-list-interval", "0.5")
        assert wait_for(lambda: not set(run_keys(rid)) & set(moto.keys()), 30), moto.keys()
        assert wait_for(lambda: not pending.exists(), 10)
        assert set(run_keys(keep)) <= set(moto.keys())
        # The listings in between never brought the deleted run back.
        time.sleep(1.5)
        ids = {r["id"] for r in a.get("/api/v1/runs")}
        assert rid not in ids and keep in ids
        assert "listed from S3" not in a.log_path.read_text().split("retrying them")[-1]
    finally:
        proxy.stop()
        finish(a)
