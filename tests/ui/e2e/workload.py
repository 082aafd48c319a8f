"""A small program for the browser tests: two named threads, a recursive
function, one function called many times with one anomalously slow call,
print and logging output (one message in markdown), about 1.5 s long."""

import json
import logging
import threading
import time


def crunch(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


class Engine:
    """A class, so the Design tab has a class node and module-to-class edges."""

    def step(self):
        return crunch(20000)


def worker_loop(stop):
    engine = Engine()
    while not stop.is_set():
        engine.step()


def fibonacci(n):
    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)


def slow_step(i):
    # Every call takes ~20 ms except the 7th, which takes ~300 ms: the anomaly.
    time.sleep(0.3 if i == 7 else 0.02)


def pause():
    # A different function between two slow_step calls, so the timeline
    # shows them as separate calls (consecutive samples of one function merge).
    deadline = time.perf_counter() + 0.025
    while time.perf_counter() < deadline:
        pass


def main():
    logging.basicConfig(level=logging.INFO)
    stop = threading.Event()
    worker = threading.Thread(target=worker_loop, args=(stop,), name="worker-1")
    worker.start()
    print("**Starting** the `workload` <b>not bold</b>")
    for i in range(12):
        slow_step(i)
        pause()
    logging.getLogger("workload").warning("fibonacci(27) = %d", fibonacci(27))
    print(json.dumps({"done": True}))
    stop.set()
    worker.join()


if __name__ == "__main__":
    main()
