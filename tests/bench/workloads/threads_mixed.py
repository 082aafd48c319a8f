"""Eight threads mixing CPU (pure-Python hashing loops) and I/O (file writes
with fsync-free flushes, short sleeps). Prints JSON like cpu_sympy.py."""

import hashlib
import json
import os
import sys
import tempfile
import threading
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 40


def worker(index: int, folder: str) -> None:
    path = os.path.join(folder, f"w{index}.txt")
    data = b"x" * 4096
    for r in range(ROUNDS):
        total = 0
        for i in range(4000):  # CPU
            total += (i * index) % 7
        digest = hashlib.sha1(data + str(total).encode()).hexdigest()
        with open(path, "a", encoding="utf-8") as f:  # I/O
            f.write(digest * 16 + "\n")
        time.sleep(0.002)


start = time.perf_counter()
with tempfile.TemporaryDirectory() as folder:
    threads = [threading.Thread(target=worker, args=(i, folder)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
seconds = time.perf_counter() - start

stats = None
if "microlog" in sys.modules:
    from microlog import _native  # pylint: disable=import-outside-toplevel

    stats = _native.sampler_stats()
print(json.dumps({"seconds": seconds, "sampler": stats}))
