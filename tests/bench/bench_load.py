#!/usr/bin/env python3
"""Load: many concurrent clients, many idle connections, and HTTP queries
against one real micrologd.

Phase 1 (ingest): ML_LOAD_CLIENTS clients (default 1000), each one run of
4 threads sampled at 100 Hz, flushing one batch of 400 samples per second
for ML_LOAD_SECONDS (default 60), through loadgen_storage.c (the real
envelope + protobuf-c protocol over nng, one REQ socket per client). At the
same time a second loadgen process holds ML_LOAD_IDLE (default 10000)
dialed, silent connections. Reported: ack latency p50/p99 (Batch call to
reply, as the clients saw it), the collector's CPU (utime+stime from
/proc/PID/stat) and RSS (VmRSS, peak VmHWM), the connections the collector
counted (microlog_ingest_connections), and whether every client's samples
were stored exactly once (each run's sample count through the API equals
what the client sent, and the collector's ingested total equals the sum).

Phase 2 (HTTP): ML_LOAD_HTTP_CONNS (default 64) keep-alive connections, a
thread each, for ML_LOAD_HTTP_SECONDS (default 10) per endpoint: the run
list and a timeline query. Requests per second and p50/p99 latency. The
client is Python (threads + http.client); on a small machine it shares the
cores with the collector, so the figures are a lower bound of the server.

    MICROLOGD=build/collector/micrologd python tests/bench/bench_load.py
    ML_LOAD_CLIENTS=200 ML_LOAD_SECONDS=30 ML_LOAD_IDLE=2000 python tests/bench/bench_load.py

Never asserts on timings; exits 1 only when data was lost.
"""
from __future__ import annotations

import http.client as httpc
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("ML_BUILD_DIR", SRC / "build"))
MICROLOGD = os.environ.get("MICROLOGD", str(BUILD / "collector" / "micrologd"))
CLIENTS = int(os.environ.get("ML_LOAD_CLIENTS", "1000"))
SECONDS = int(os.environ.get("ML_LOAD_SECONDS", "60"))
IDLE = int(os.environ.get("ML_LOAD_IDLE", "10000"))
HTTP_CONNS = int(os.environ.get("ML_LOAD_HTTP_CONNS", "64"))
HTTP_SECONDS = float(os.environ.get("ML_LOAD_HTTP_SECONDS", "10"))
SAMPLES_PER_BATCH = 400  # 4 threads x 100 Hz x 1 s
CLK_TCK = os.sysconf("SC_CLK_TCK")


def build_loadgen(out: Path) -> Path:
    exe = out / "loadgen_storage"
    subprocess.run(["cc", "-O2", "-o", str(exe), str(SRC / "tests/bench/loadgen_storage.c"),
                    "-I", str(BUILD / "proto/gen"), "-I", str(SRC / "proto"),
                    str(BUILD / "proto/libml_proto.a"), "-lnng", "-lprotobuf-c", "-llz4",
                    "-lpthread"], check=True)
    return exe


def raise_nofile() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start(data: Path, *extra: str) -> tuple[subprocess.Popen[bytes], dict]:
    ready = data / "ready.json"
    proc = subprocess.Popen([MICROLOGD, "--data-dir", str(data), "--http", "127.0.0.1:0",
                             "--ready-file", str(ready), *extra],
                            stdout=subprocess.DEVNULL, stderr=open(data / "log", "ab"),
                            preexec_fn=raise_nofile)
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((data / "log").read_text())
        time.sleep(0.02)
    return proc, json.loads(ready.read_text())


def proc_stats(pid: int) -> dict[str, float]:
    """CPU seconds so far, RSS and peak RSS (bytes) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    status = {line.split(":")[0]: line.split(":")[1].strip()
              for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line}
    kb = lambda k: int(status.get(k, "0 kB").split()[0]) * 1024  # noqa: E731
    return {"cpu_s": cpu, "rss": kb("VmRSS"), "hwm": kb("VmHWM"),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def metrics(http: str) -> dict[str, float]:
    text = urllib.request.urlopen(http + "/metrics", timeout=30).read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def get_json(http: str, path: str):
    return json.loads(urllib.request.urlopen(http + path, timeout=60).read())


def http_load(http: str, path: str, conns: int, seconds: float) -> dict:
    """conns threads, each a keep-alive connection issuing GET path in a loop."""
    host = urllib.parse.urlsplit(http)
    lats: list[list[float]] = [[] for _ in range(conns)]
    errors = [0] * conns
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        c = httpc.HTTPConnection(host.hostname, host.port, timeout=30)
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors[i] += 1
            except (OSError, httpc.HTTPException):
                errors[i] += 1
                c.close()
                c = httpc.HTTPConnection(host.hostname, host.port, timeout=30)
                continue
            lats[i].append(time.perf_counter() - t)
        c.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    flat = sorted(x for l in lats for x in l)
    n = len(flat)
    return {"requests": n, "errors": sum(errors), "rps": n / elapsed,
            "p50_ms": flat[n // 2] * 1e3 if n else None,
            "p99_ms": flat[int((n - 1) * 0.99)] * 1e3 if n else None}


def main() -> int:
    raise_nofile()
    results: dict = {"clients": CLIENTS, "seconds": SECONDS, "idle": IDLE,
                     "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}
    with tempfile.TemporaryDirectory(prefix="ml_bench_load_") as tmp:
        tmpd = Path(tmp)
        loadgen = build_loadgen(tmpd)
        data = tmpd / "data"
        data.mkdir()
        proc, info = start(data)
        try:
            env = dict(os.environ, ML_LOADGEN_PACE_MS="1000", ML_LOADGEN_TIMEOUT_MS="60000")
            idle = None
            if IDLE:
                # One paced client of its own keeps the idle sockets open for
                # the whole ingest phase.
                idle = subprocess.Popen(
                    [str(loadgen), info["ingest"], "1", str(SECONDS + 5), str(SAMPLES_PER_BATCH)],
                    env=dict(env, ML_LOADGEN_IDLE=str(IDLE)), stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
            gen = subprocess.Popen(
                [str(loadgen), info["ingest"], str(CLIENTS), str(SECONDS), str(SAMPLES_PER_BATCH)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            base = proc_stats(proc.pid)
            t0 = time.monotonic()
            curve = []
            max_conns = 0.0
            while gen.poll() is None:
                time.sleep(1)
                s = proc_stats(proc.pid)
                try:
                    conns = metrics(info["http"]).get("microlog_ingest_connections", 0)
                except OSError:
                    conns = float("nan")
                max_conns = max(max_conns, conns)
                curve.append({"t": time.monotonic() - t0, "rss": s["rss"], "cpu_s": s["cpu_s"],
                              "connections": conns, "fds": s["fds"]})
            out, err = gen.communicate()
            wall = time.monotonic() - t0
            end = proc_stats(proc.pid)
            if idle:
                idle_out, idle_err = idle.communicate(timeout=SECONDS + 120)
                results["idle_loadgen"] = json.loads(idle_out) if idle_out.strip() else idle_err
            gen_res = json.loads(out) if out.strip() else {"error": err[-2000:]}
            results["loadgen"] = gen_res
            results["collector"] = {
                "cpu_s": end["cpu_s"] - base["cpu_s"], "wall_s": wall,
                "cpu_percent_of_one_core": 100 * (end["cpu_s"] - base["cpu_s"]) / wall,
                "rss_end": end["rss"], "rss_peak": end["hwm"],
                "max_connections_seen": max_conns,
                "max_fds_seen": max(c["fds"] for c in curve) if curve else 0}
            results["curve"] = curve

            # Exactly once: every client's run, complete, with all it sent.
            runs = get_json(info["http"], "/api/v1/runs")
            main_runs = [r for r in runs if r["samples"] != (SECONDS + 5) * SAMPLES_PER_BATCH
                         or not IDLE]
            want = SECONDS * SAMPLES_PER_BATCH
            bad = [r for r in runs if r["samples"] not in (want, (SECONDS + 5) * SAMPLES_PER_BATCH)]
            total_sent = gen_res.get("samples", 0) + (
                results.get("idle_loadgen", {}).get("samples", 0)
                if isinstance(results.get("idle_loadgen"), dict) else 0)
            m = metrics(info["http"])
            results["check"] = {
                "runs_listed": len(runs), "runs_expected": CLIENTS + (1 if IDLE else 0),
                "runs_with_wrong_count": len(bad),
                "samples_acked_by_clients": total_sent,
                "samples_listed": sum(r["samples"] for r in runs),
                "ingested_samples_total": m.get("microlog_ingested_samples_total"),
                "failed_clients": gen_res.get("failed_clients")}
            ok = (len(runs) == CLIENTS + (1 if IDLE else 0) and not bad
                  and results["check"]["samples_listed"] == total_sent
                  and m.get("microlog_ingested_samples_total") == total_sent
                  and gen_res.get("failed_clients") == 0)
            results["nothing_lost"] = ok

            # HTTP at HTTP_CONNS connections over the stored runs.
            rid = urllib.parse.quote(main_runs[0]["id"], safe="")
            timeline = (f"/api/v1/runs/{rid}/timeline?start=0&end={SECONDS}&width=1000")
            results["http"] = {
                "runs": http_load(info["http"], "/api/v1/runs", HTTP_CONNS, HTTP_SECONDS),
                "timeline": http_load(info["http"], timeline, HTTP_CONNS, HTTP_SECONDS)}
            results["runs_list_bytes"] = len(urllib.request.urlopen(
                info["http"] + "/api/v1/runs", timeout=30).read())
        finally:
            for p in (proc,):
                p.terminate()
                p.wait()
    g, c, k = results["loadgen"], results["collector"], results["check"]
    print(f"load: {CLIENTS} clients x 4 threads x 100 Hz x {SECONDS} s + {IDLE} idle "
          f"connections, one micrologd (RLIMIT_NOFILE {results['nofile']})")
    print(f"  {'ingest':<34} {'value':>14}")
    print(f"  {'samples acked / listed / counted':<34} {k['samples_acked_by_clients']:,} / "
          f"{k['samples_listed']:,} / {k['ingested_samples_total']:,.0f}")
    print(f"  {'runs listed / expected':<34} {k['runs_listed']} / {k['runs_expected']} "
          f"(wrong count: {k['runs_with_wrong_count']}, failed clients: {k['failed_clients']})")
    print(f"  {'nothing lost, stored once':<34} {results['nothing_lost']}")
    if "ack_p50_ms" in g:
        print(f"  {'ack latency p50 / p99 / max':<34} {g['ack_p50_ms']:.1f} / "
              f"{g['ack_p99_ms']:.1f} / {g['ack_max_ms']:.1f} ms")
    print(f"  {'collector CPU':<34} {c['cpu_s']:.1f} s over {c['wall_s']:.1f} s "
          f"({c['cpu_percent_of_one_core']:.0f}% of one core)")
    print(f"  {'collector RSS end / peak':<34} {c['rss_end'] / 2**20:.1f} / "
          f"{c['rss_peak'] / 2**20:.1f} MiB")
    print(f"  {'connections seen (metric) / fds':<34} {c['max_connections_seen']:.0f} / "
          f"{c['max_fds_seen']}")
    il = results.get("idle_loadgen")
    if isinstance(il, dict):
        print(f"  {'idle connections held by loadgen':<34} {il.get('idle_held')}")
    print(f"  HTTP, {HTTP_CONNS} keep-alive connections, {HTTP_SECONDS:.0f} s each "
          f"(Python client on the same cores):")
    print(f"  {'endpoint':<12} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for name, r in results["http"].items():
        print(f"  {name:<12} {r['rps']:>10.0f} {r['p50_ms'] or 0:>9.2f} {r['p99_ms'] or 0:>9.2f} "
              f"{r['errors']:>7}")
    print(f"  (run list of {k['runs_listed']} runs: {results['runs_list_bytes']:,} bytes)")
    if os.environ.get("ML_BENCH_OUT"):
        out = Path(os.environ["ML_BENCH_OUT"])
        out = out / "load.json" if out.is_dir() else out
        out.write_text(json.dumps({"load": results}, indent=2))
    return 0 if results["nothing_lost"] else 1


if __name__ == "__main__":
    sys.exit(main())
