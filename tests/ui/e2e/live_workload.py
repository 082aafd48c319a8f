"""A run that lasts about 4 s and prints every 0.25 s: the browser test
watches it live."""

import time


def tick(i):
    deadline = time.perf_counter() + 0.25
    while time.perf_counter() < deadline:
        pass
    print(f"live tick {i}")


for i in range(16):
    tick(i)
