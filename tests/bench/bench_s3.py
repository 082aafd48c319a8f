#!/usr/bin/env python3
"""S3 upload throughput: a real micrologd uploading recordings to a local
moto server (moto's S3 in server mode, a separate process), side by side
with a plain local-disk write (write + fsync) of the same bytes for scale.

For each size a data dir holds one finished run whose recording.mlr is
that many incompressible bytes and whose run.json says "uploaded": false;
micrologd is started on it and uploads it (single PUT below the multipart
threshold, multipart above: MICROLOG_S3_MULTIPART_BYTES). The time is
taken from the collector's own log, from "uploading" (the upload starts:
file read, SigV4, curl multi on the loop) to "uploaded to S3" (recording
and run.json both answered 2xx). Medians of ML_BENCH_REPS runs with the
range. moto is a Python server: it bounds the figures; they measure that
the client streams without stalls, not what AWS would sustain.

    MICROLOGD=build/collector/micrologd python tests/bench/bench_s3.py
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("ML_BUILD_DIR", SRC / "build"))
MICROLOGD = os.environ.get("MICROLOGD", str(BUILD / "collector" / "micrologd"))
REPS = int(os.environ.get("ML_BENCH_REPS", "5"))
MIB = 1 << 20
BUCKET = "microlog-bench"
STAMP = "2026_01_01_00_00_00"

# (name, recording bytes, multipart threshold = part size)
CASES = [
    ("1 MiB, single PUT", 1 * MIB, 8 * MIB),
    ("4 MiB, single PUT", 4 * MIB, 8 * MIB),
    ("32 MiB, single PUT", 32 * MIB, 64 * MIB),
    ("32 MiB, multipart 8 MiB", 32 * MIB, 8 * MIB),
    ("64 MiB, multipart 8 MiB", 64 * MIB, 8 * MIB),
]

LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, S3_UPLOAD_PART_MIN_SIZE="1024"))
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto did not start: {log.read_text()}")
            time.sleep(0.1)


def make_run(data: Path, size: int, payload: bytes) -> None:
    """One finished, not yet uploaded run of `size` recording bytes."""
    label = "bench"
    d = data / "runs" / "local" / label / STAMP
    d.mkdir(parents=True)
    (d / "recording.mlr").write_bytes(payload[:size])
    meta = {
        "id": f"{label}/{STAMP}", "label": label, "stamp": STAMP, "timestamp": STAMP,
        "team": "local", "status": "complete", "host": "bench", "user": "bench", "pid": 1,
        "uid": "b" * 32, "argv": ["bench.py"], "executable": "/usr/bin/python3",
        "python_version": "3.11.2", "parent_id": "", "client_version": "0.1.0",
        "start_unix_us": 1_767_225_600_000_000, "sample_period": 0.01, "status_period": 0.1,
        "memory_period": 1.0, "env": {}, "end_us": 3_600_000_000, "samples": 1, "logs": 0,
        "batches": 1, "closed": True, "last_seq": 1, "exit_status": 0, "dropped_samples": 0,
        "dropped_logs": 0, "recorded": True, "uploaded": False, "remote": False,
        "stored_bytes": size,
    }
    (d / "run.json").write_text(json.dumps(meta))


def log_time(line: str) -> float:
    m = LOG_TIME.match(line)
    assert m, line
    return dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.timezone.utc).timestamp()


def upload_once(tmp: Path, port: int, size: int, part: int, payload: bytes) -> float:
    """Seconds from the start of the upload to "uploaded to S3"."""
    data = tmp / "data"
    shutil.rmtree(data, ignore_errors=True)
    make_run(data, size, payload)
    ready = data / "ready.json"
    log = data / "micrologd.log"
    env = dict(os.environ, MICROLOG_S3_ROOT=f"s3://{BUCKET}/bench",
               MICROLOG_S3_REGION="us-east-1", MICROLOG_S3_ENDPOINT=f"http://127.0.0.1:{port}",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               MICROLOG_S3_MULTIPART_BYTES=str(part))
    env.pop("AWS_SESSION_TOKEN", None)
    env.pop("AWS_PROFILE", None)
    proc = subprocess.Popen([MICROLOGD, "--data-dir", str(data), "--http", "127.0.0.1:0",
                             "--ready-file", str(ready), "--collector-id", "1", "--verbose"],
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"), env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "uploaded to S3" in text:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no upload: {text[-2000:]}")
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lines = text.splitlines()
    t0 = log_time(next(x for x in lines if ": uploading " in x and "recording.mlr" in x))
    t1 = log_time(next(x for x in lines if "uploaded to S3" in x))
    return t1 - t0


def disk_once(tmp: Path, size: int, payload: bytes) -> float:
    path = tmp / "disk.bin"
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        f.write(payload[:size])
        f.flush()
        os.fsync(f.fileno())
    t = time.perf_counter() - t0
    path.unlink()
    return t


def summary(sizes: int, secs: list[float]) -> dict:
    rates = [sizes / s / MIB for s in secs]
    return {"median_mib_s": statistics.median(rates), "min": min(rates), "max": max(rates),
            "median_s": statistics.median(secs)}


def main() -> int:
    try:
        import boto3  # noqa: F401  (moto[server] brings it)
        import moto  # noqa: F401
    except ImportError:
        print("bench_s3: moto[server] is not installed (tests/requirements.txt)", file=sys.stderr)
        return 1
    import boto3

    payload = os.urandom(max(c[1] for c in CASES))
    results: dict = {"reps": REPS, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="ml_bench_s3_") as tmp_s:
        tmp = Path(tmp_s)
        port = free_port()
        moto_proc = start_moto(port, tmp / "moto.log")
        try:
            boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                         aws_access_key_id="testing",
                         aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
            upload_once(tmp, port, 64 * 1024, 8 * MIB, payload)  # warm-up (imports in moto)
            for name, size, part in CASES:
                s3 = [upload_once(tmp, port, size, part, payload) for _ in range(REPS)]
                disk = [disk_once(tmp, size, payload) for _ in range(REPS)]
                results["cases"][name] = {"bytes": size, "part_bytes": part,
                                          "s3": summary(size, s3), "disk": summary(size, disk)}
        finally:
            moto_proc.terminate()
            moto_proc.wait(timeout=30)

    print(f"S3 upload to a local moto server vs local disk write+fsync, "
          f"median of {REPS} (min..max), MiB/s")
    print(f"{'recording':26} {'S3 MiB/s':>10} {'range':>15} {'disk MiB/s':>11} {'range':>17}"
          f" {'S3 s':>7}")
    for name, r in results["cases"].items():
        s3, disk = r["s3"], r["disk"]
        print(f"{name:26} {s3['median_mib_s']:10.1f} {s3['min']:7.1f}..{s3['max']:<7.1f}"
              f" {disk['median_mib_s']:11.1f} {disk['min']:8.1f}..{disk['max']:<8.1f}"
              f" {s3['median_s']:7.3f}")
    if os.environ.get("ML_BENCH_OUT"):
        out = Path(os.environ["ML_BENCH_OUT"])
        if out.is_dir():
            out = out / "bench_s3.json"
        out.write_text(json.dumps({"s3": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
