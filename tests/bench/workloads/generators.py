"""Generator-heavy work with a known shape, for the truth of stacks.

    python generators.py SECONDS [main|thread|both]

The same phases run in the main thread, then in a worker thread named
"Worker" (both, the default): json.dump with indent (the encoder is a chain
of generators), a generator pipeline with yield from, a send()-driven
coroutine and an async generator driven by asyncio. Every frame the work
runs in is called from encode_phase()/pipeline_phase()/... which are called
from work(), the target of the worker thread and a callee of <module>.

The last line of stdout is JSON: the seconds spent inside json.dump and in
all of work(), per thread, by the thread's CPU clock (time.thread_time():
"encoder", "work") and by the wall clock (time.monotonic(): "encoder_wall",
"work_wall"), so a test can compare the profile's share of the encoder
against the program's own. Samples are taken by the wall clock: the wall
shares are the ones to compare when other processes compete for the CPU.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
import time

DATA = {
    f"key{i}": {
        "values": list(range(i % 7, i % 7 + 12)),
        "nested": {"name": f"n{i}", "flags": [True, False, None], "ratio": i / 7},
        "rows": [{"a": j, "b": str(j), "c": [j, j + 1]} for j in range(4)],
    }
    for i in range(60)
}


def encode_phase(budget: float, times: dict) -> None:
    end = time.monotonic() + budget
    while time.monotonic() < end:
        out = io.StringIO()
        # monotonic() reads the vDSO; thread_time() is a system call, and a
        # thread competing for the CPU is often descheduled as one returns:
        # that wait happens outside json.dump, and outside the wall window.
        t0 = time.thread_time()
        w0 = time.monotonic()
        json.dump(DATA, out, indent=1)
        w1 = time.monotonic()
        times["encoder"] += time.thread_time() - t0
        times["encoder_wall"] += w1 - w0


def numbers(n):
    yield from range(n)


def squares(it):
    for x in it:
        yield x * x


def evens(it):
    yield from (x for x in it if x % 2 == 0)


def pipeline_phase(budget: float) -> int:
    total = 0
    end = time.monotonic() + budget
    while time.monotonic() < end:
        total += sum(evens(squares(numbers(2000))))
    return total


def averager():
    total = count = 0
    average = None
    while True:
        value = yield average
        total += value
        count += 1
        average = total / count


def coroutine_phase(budget: float) -> float:
    end = time.monotonic() + budget
    result = 0.0
    while time.monotonic() < end:
        c = averager()
        next(c)
        for i in range(2000):
            result = c.send(i)
    return result


async def squares_async(n):
    for i in range(n):
        yield i * i


async def consume(budget: float) -> int:
    total = 0
    end = time.monotonic() + budget
    while time.monotonic() < end:
        async for x in squares_async(2000):
            total += x
    return total


def async_phase(budget: float) -> int:
    return asyncio.run(consume(budget))


def inner(n):
    for i in range(n):
        yield i


def middle(n):
    yield from inner(n)


def outer(n):
    yield from middle(n)


def delegation_phase(budget: float) -> int:
    end = time.monotonic() + budget
    total = 0
    while time.monotonic() < end:
        total += sum(outer(3000))
    return total


def work(seconds: float, times: dict) -> None:
    t0, w0 = time.thread_time(), time.monotonic()
    encode_phase(seconds * 0.5, times)
    pipeline_phase(seconds * 0.125)
    coroutine_phase(seconds * 0.125)
    async_phase(seconds * 0.125)
    delegation_phase(seconds * 0.125)
    times["work"] += time.thread_time() - t0
    times["work_wall"] += time.monotonic() - w0


CLOCKS = ("encoder", "work", "encoder_wall", "work_wall")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    where = sys.argv[2] if len(sys.argv) > 2 else "both"
    result = {}
    if where in ("main", "both"):
        times = result["MainThread"] = dict.fromkeys(CLOCKS, 0.0)
        work(seconds, times)
    if where in ("thread", "both"):
        times = result["Worker"] = dict.fromkeys(CLOCKS, 0.0)
        worker = threading.Thread(target=work, args=(seconds, times), name="Worker")
        worker.start()
        worker.join()
    print(json.dumps(result))


main()
