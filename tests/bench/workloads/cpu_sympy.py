"""CPU-bound work in a real third-party pure-Python library (sympy): series,
expansion and factorisation. Prints {"seconds": wall time of the work, and the
sampler's own figures when microlog is running} as JSON on the last line."""

import json
import sys
import time

import sympy
from sympy.core.cache import clear_cache

x, y, z = sympy.symbols("x y z")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3

start = time.perf_counter()
for i in range(ROUNDS):
    sympy.factor(sympy.expand((x + y + z + i + 1) ** 9))
    sympy.series(sympy.sin(x) * sympy.exp(x), x, 0, 12)
    clear_cache()  # every round does the work again
seconds = time.perf_counter() - start

stats = None
if "microlog" in sys.modules:
    try:
        from microlog import _native  # pylint: disable=import-outside-toplevel

        stats = _native.sampler_stats()
    except ImportError:
        pass  # the original Microlog (bench_recording_size.py) has no _native
print(json.dumps({"seconds": seconds, "sampler": stats}))
