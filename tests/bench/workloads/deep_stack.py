"""A thread 50 Python frames deep, busy at the bottom, for the per-sample
cost. Prints the sampler's figures as JSON."""

import json
import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0


def down(n: int) -> None:
    if n == 0:
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            pass
        return
    down(n - 1)


# The main thread is the only Python thread, so every walk the sampler
# times is the 50-frame one: <module> + down(48) .. down(0).
down(48)
from microlog import _native  # pylint: disable=import-outside-toplevel,wrong-import-position

print(json.dumps(_native.sampler_stats()))
