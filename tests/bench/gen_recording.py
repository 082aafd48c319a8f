"""Writes a synthetic run straight into a collector data directory, in the
real stored format: journal.mlj (the record layout of collector/src/journal.h:
"MLJ1", then u32 length | u32 XXH32(type + payload) | u8 type | payload) whose
payloads are the real protobuf messages of proto/microlog.proto (OpenRun,
Batch, CloseRun, encoded here by hand), plus its run.json.

The program it pretends to record: THREADS threads sampled at HZ for SECONDS,
each running a four-level call tree (phase -> task -> step -> leaf) whose
calls last from tens of milliseconds to a minute, a status tick every 0.1 s
and a log line every few seconds.

    python tests/bench/gen_recording.py DATA_DIR [--seconds 3600] [--threads 8] [--hz 100]
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import time
from pathlib import Path

# ---- protobuf encoding (the few wire types we need) ----


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(v: int) -> int:
    return (v << 1) ^ (v >> 63)


def f_uint(field: int, v: int) -> bytes:
    return varint(field << 3) + varint(v & 0xFFFFFFFFFFFFFFFF) if v else b""


def f_bytes(field: int, b: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(b)) + b


def f_str(field: int, s: str) -> bytes:
    return f_bytes(field, s.encode()) if s else b""


def f_double(field: int, v: float) -> bytes:
    return varint(field << 3 | 1) + struct.pack("<d", v)


def f_float(field: int, v: float) -> bytes:
    return varint(field << 3 | 5) + struct.pack("<f", v)


def f_packed(field: int, values, signed: bool = False) -> bytes:
    if not values:
        return b""
    body = b"".join(varint(zigzag(v) if signed else v) for v in values)
    return f_bytes(field, body)


# ---- XXH32 (seed 0), the journal's checksum ----

P1, P2, P3, P4, P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
M = 0xFFFFFFFF


def rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & M


def xxh32(data: bytes) -> int:
    n = len(data)
    i = 0
    if n >= 16:
        v1, v2, v3, v4 = (P1 + P2) & M, P2, 0, (-P1) & M
        words = struct.unpack_from("<%dI" % (n // 16 * 4), data)
        for k in range(0, len(words), 4):
            v1 = rotl((v1 + words[k] * P2) & M, 13) * P1 & M
            v2 = rotl((v2 + words[k + 1] * P2) & M, 13) * P1 & M
            v3 = rotl((v3 + words[k + 2] * P2) & M, 13) * P1 & M
            v4 = rotl((v4 + words[k + 3] * P2) & M, 13) * P1 & M
        h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) & M
        i = n // 16 * 16
    else:
        h = P5
    h = (h + n) & M
    while i + 4 <= n:
        h = rotl((h + struct.unpack_from("<I", data, i)[0] * P3) & M, 17) * P4 & M
        i += 4
    while i < n:
        h = rotl((h + data[i] * P5) & M, 11) * P1 & M
        i += 1
    h ^= h >> 15
    h = h * P2 & M
    h ^= h >> 13
    h = h * P3 & M
    h ^= h >> 16
    return h


def record(rtype: int, payload: bytes) -> bytes:
    body = bytes([rtype]) + payload
    return struct.pack("<II", len(payload), xxh32(body)) + body


# ---- the synthetic program ----


class Thread:
    """A four-level call tree; each level's call ends after a random time."""

    LEVELS = [(20e6, 90e6, 10), (1e6, 5e6, 20), (50e3, 500e3, 30), (10e3, 100e3, 40)]

    def __init__(self, rng: random.Random, tid: int) -> None:
        self.rng = rng
        self.tid = tid
        self.calls: list[tuple[int, int]] = []  # (function index, end time) per level

    def stack_at(self, t: int) -> tuple[tuple[int, int, int], ...]:
        # Close the levels whose call ended; a closed level closes the deeper ones.
        for d, (_, end) in enumerate(self.calls):
            if t >= end:
                del self.calls[d:]
                break
        while len(self.calls) < len(self.LEVELS):
            lo, hi, nfunc = self.LEVELS[len(self.calls)]
            end = t + int(self.rng.uniform(lo, hi))
            func = self.rng.randrange(nfunc)
            if self.calls:
                end = min(end, self.calls[-1][1])
                # A function calls a few callees of its own: a real call tree.
                func = (self.calls[-1][0] * 7 + self.rng.randrange(3)) % nfunc
            self.calls.append((func, end))
        # The leaf level is absent a quarter of the time (the step works itself).
        depth = len(self.calls) - (1 if (t // 30000 + self.tid) % 4 == 0 else 0)
        line = (t // 20000) % 2  # two executing lines per function
        return tuple((d, f, line) for d, (f, _) in enumerate(self.calls[:depth]))


def generate(data_dir: Path, seconds: int, threads: int, hz: int, seed: int = 6) -> dict:
    rng = random.Random(seed)
    label, stamp = "bench-query", "2026_01_01_00_00_00"
    run_dir = data_dir / "runs" / "local" / label / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    uid = "b" * 32
    period_us = 1_000_000 // hz
    start_unix_us = int(time.time() * 1e6)
    strings: dict[str, int] = {}
    frames: dict[tuple[int, int, int], int] = {}
    stacks: dict[tuple, int] = {}
    kinds = ["phase", "task", "step", "leaf"]

    out = open(run_dir / "journal.mlj", "wb")
    out.write(b"MLJ1")
    open_run = (f_str(1, uid) + f_str(2, label) + f_str(3, stamp) + f_uint(4, start_unix_us)
                + f_str(5, "benchhost") + f_str(6, "bench") + f_uint(7, 4242)
                + f_double(12, 1 / hz) + f_double(13, 0.1) + f_double(14, 1.0))
    out.write(record(1, open_run))

    def string_id(s: str, defs: list) -> int:
        if s not in strings:
            strings[s] = len(strings) + 1
            defs.append(f_bytes(4, f_uint(1, strings[s]) + f_str(2, s)))
        return strings[s]

    ts = [Thread(rng, i + 1) for i in range(threads)]
    t = 0
    seq = 0
    total = 0
    for second in range(seconds):
        seq += 1
        defs: list[bytes] = []
        th_col, dt_col, st_col, cpu_col = [], [], [], []
        base = t
        prev = base
        if second == 0:
            for i in range(threads):
                name = "MainThread" if i == 0 else f"worker-{i}"
                defs.append(f_bytes(7, f_uint(1, i + 1) + f_uint(2, 1000 + i) + f_uint(3, 5000 + i)
                                    + f_str(4, name)))
        for _ in range(hz):
            for th in ts:
                key = th.stack_at(t)
                ids = []
                for fr in key:
                    if fr not in frames:
                        d, f, line = fr
                        frames[fr] = len(frames) + 1
                        mod = f"app.{kinds[d]}s"
                        name = string_id(f"{mod}.{kinds[d].capitalize()}{f % 4}.run{f}", defs)
                        file = string_id(f"/srv/app/{kinds[d]}s.py", defs)
                        first = 10 + 20 * f
                        defs.append(f_bytes(5, f_uint(1, frames[fr]) + f_uint(2, name) + f_uint(3, file)
                                            + f_uint(4, first + 1 + line) + f_uint(6, first)))
                    ids.append(frames[fr])
                key_ids = tuple(ids)
                if key_ids not in stacks:
                    stacks[key_ids] = len(stacks) + 1
                    defs.append(f_bytes(6, f_uint(1, stacks[key_ids]) + f_packed(2, list(key_ids))))
                th_col.append(th.tid)
                dt_col.append(t - prev)
                prev = t
                st_col.append(stacks[key_ids])
                cpu_col.append(period_us - rng.randrange(2000))
            t += period_us
        total += len(th_col)
        samples = (f_packed(1, th_col) + f_packed(2, dt_col, signed=True) + f_packed(3, st_col)
                   + f_packed(4, cpu_col))
        status = []
        for k in range(10):
            tick_t = base + k * 100_000
            status.append(f_bytes(9, f_uint(1, tick_t) + f_float(2, 80 + rng.random() * 20)
                                  + f_float(3, 30.0) + f_uint(4, 200_000_000 + second * 1000)
                                  + f_uint(5, 16_000_000_000 if k == 0 else 0)
                                  + f_uint(6, 8_000_000_000 if k == 0 else 0)
                                  + f_uint(7, 300) + f_uint(8, 1_000_000 + second)))
        logs = []
        if second % 5 == 0:
            logs.append(f_bytes(10, f_uint(1, base + 1234) + f_uint(2, 1) + f_uint(3, 3)
                                + f_uint(4, 20) + f_str(5, f"processed chunk {second}")
                                + f_uint(6, st_col[0]) + f_str(7, "app")))
        batch = (f_str(1, uid) + f_uint(2, seq) + f_uint(3, base) + b"".join(defs)
                 + f_bytes(8, samples) + b"".join(status) + b"".join(logs))
        out.write(record(2, batch))
    close = f_str(1, uid) + f_uint(2, t) + f_uint(3, seq)
    out.write(record(3, close))
    out.close()
    meta = {"id": f"{label}/{stamp}", "label": label, "stamp": stamp, "timestamp": stamp,
            "team": "local", "uid": uid, "host": "benchhost", "user": "bench", "pid": 4242,
            "start_unix_us": start_unix_us, "sample_period": 1 / hz, "status_period": 0.1,
            "memory_period": 1.0, "status": "complete", "end_us": t, "samples": total,
            "logs": seconds // 5, "batches": seq, "closed": True, "last_seq": seq,
            "exit_status": 0, "argv": ["bench.py"], "env": {}}
    (run_dir / "run.json").write_text(json.dumps(meta))
    return {"id": meta["id"], "samples": total, "journal_bytes": (run_dir / "journal.mlj").stat().st_size,
            "frames": len(frames), "stacks": len(stacks), "duration": t / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--seconds", type=int, default=3600)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--hz", type=int, default=100)
    a = ap.parse_args()
    print(json.dumps(generate(a.data_dir, a.seconds, a.threads, a.hz)))


if __name__ == "__main__":
    main()
