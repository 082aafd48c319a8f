"""A thread 50 Python frames deep, busy at the bottom, for the per-sample
cost. Prints the sampler's figures as JSON."""

import json
import sys
import threading
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0


def down(n: int) -> None:
    if n == 0:
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            pass
        return
    down(n - 1)


# down(49) .. down(0) plus the thread's own run frame: 50 recorded frames
# (threading's frames are hidden, as the original hides them).
worker = threading.Thread(target=down, args=(49,))
worker.start()
worker.join()
from microlog import _native  # pylint: disable=import-outside-toplevel,wrong-import-position

print(json.dumps(_native.sampler_stats()))
