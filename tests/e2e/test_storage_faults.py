"""Disk full (a real 8 MiB tmpfs as the data dir) and retention, against a
real micrologd and the real ingest protocol (loadgen_storage.c)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import start_collector, wait_for
from test_storage import SAMPLES_PER_BATCH, loadgen  # noqa: F401  (fixture)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {out.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> Path:
    """Writes a file until the file system is full."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    chunk = b"\0" * 4096
    try:
        while True:
            os.write(fd, chunk)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def load(loadgen: Path, url: str, batches: int) -> tuple[int, str]:  # noqa: F811
    out = subprocess.run([str(loadgen), url, "1", str(batches), str(SAMPLES_PER_BATCH)],
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)["samples"], out.stderr


def test_disk_full(loadgen: Path, small_disk: Path) -> None:  # noqa: F811
    c = start_collector(small_disk / "data")
    try:
        acked, _ = load(loadgen, c.ingest, 5)
        assert acked == 5 * SAMPLES_PER_BATCH
        (old,) = [r["id"] for r in c.get("/api/v1/runs")]
        assert wait_for(lambda: (small_disk / "data/runs/local" / old / "recording.mlr").exists(),
                        20)
        flame = c.get(c.run_path(old, "flamegraph"))

        filler = fill(small_disk)
        acked, err = load(loadgen, c.ingest, 5)
        # Refused with RESOURCE_EXHAUSTED (8): the client keeps its data.
        assert acked < 5 * SAMPLES_PER_BATCH
        assert "status 8" in err and "No space left on device" in err, err
        assert c.proc.poll() is None
        # What is stored stays readable.
        assert c.get(c.run_path(old, "flamegraph")) == flame
        assert old in {r["id"] for r in c.get("/api/v1/runs")}

        # Space comes back: ingest works again, without a restart.
        filler.unlink()
        acked, err = load(loadgen, c.ingest, 5)
        assert acked == 5 * SAMPLES_PER_BATCH, err
        runs = c.get("/api/v1/runs?status=complete")
        assert len([r for r in runs if r["samples"] == 5 * SAMPLES_PER_BATCH]) >= 2
    finally:
        code = c.stop()
    assert code == 0
    # Restarted on the same disk, every complete run is still there.
    c = start_collector(small_disk / "data")
    try:
        assert old in {r["id"] for r in c.get("/api/v1/runs")}
        assert c.get(c.run_path(old, "flamegraph")) == flame
    finally:
        assert c.stop() == 0


def test_retention_by_bytes_and_age(loadgen: Path, tmp_path: Path) -> None:  # noqa: F811
    data = tmp_path / "data"
    c = start_collector(data)
    try:
        for _ in range(3):
            acked, _ = load(loadgen, c.ingest, 5)
            assert acked == 5 * SAMPLES_PER_BATCH
        runs = c.get("/api/v1/runs")
        assert len(runs) == 3
        assert wait_for(lambda: len(list(data.glob("runs/local/*/*/recording.mlr"))) == 3, 20)
        # The recording is renamed into place before run.json is rewritten
        # with its size: wait for both, so the budget below is the real one.
        sizes = {r["id"]: (data / "runs/local" / r["id"] / "recording.mlr").stat().st_size
                 for r in runs}
        assert wait_for(lambda: all(
            json.loads((data / "runs/local" / rid / "run.json").read_text())["stored_bytes"] == n
            for rid, n in sizes.items()), 20)
    finally:
        assert c.stop() == 0
    # Room for the two newest runs only: the oldest goes.
    newest = [r["id"] for r in runs]  # newest first
    budget = sizes[newest[0]] + sizes[newest[1]]
    c = start_collector(data, "--retain-bytes", str(budget))
    try:
        assert wait_for(lambda: len(c.get("/api/v1/runs")) == 2, 10)
        assert [r["id"] for r in c.get("/api/v1/runs")] == newest[:2]
        assert not (data / "runs/local" / newest[2]).exists()
    finally:
        assert c.stop() == 0
    # By age: one run started an hour ago, one 10 days ago; --retain-days 7
    # removes the old one only.
    for rid, age in ((newest[0], 3600), (newest[1], 10 * 86400)):
        meta_path = data / "runs/local" / rid / "run.json"
        meta = json.loads(meta_path.read_text())
        meta["start_unix_us"] = int((time.time() - age) * 1e6)
        meta_path.write_text(json.dumps(meta))
    (data / "index.jsonl").unlink()  # edited behind the collector's back: rescan
    c = start_collector(data, "--retain-days", "7")
    try:
        assert wait_for(lambda: [r["id"] for r in c.get("/api/v1/runs")] == newest[:1], 10)
        assert not (data / "runs/local" / newest[1]).exists()
    finally:
        assert c.stop() == 0


def test_bad_retention_flags(tmp_path: Path) -> None:
    from conftest import MICROLOGD
    for flag, value in (("--retain-days", "0"), ("--retain-days", "-3"),
                        ("--retain-bytes", "12X"), ("--retain-bytes", "0")):
        out = subprocess.run([MICROLOGD, "--data-dir", str(tmp_path), flag, value],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 2 and flag in out.stderr, (flag, value, out.stderr)
