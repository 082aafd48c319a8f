"""Operations that raise CPython audit events, timed in-process (best of
REPS): open() of a file, id() (one "builtins.id" event each) and
copy.deepcopy (an id() per object). Prints JSON like cpu_sympy.py.

    audited_ops.py [--python-hook]

--python-hook installs a trivial audit hook written in Python (returns
unless the event is "open"), the cost a Python-level hook would add."""

import copy
import json
import os
import sys
import tempfile
import time

REPS = 7


def best(fn) -> float:
    times = []
    for _ in range(REPS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    if "--python-hook" in sys.argv:
        sys.addaudithook(lambda event, args: None if event != "open" else len(args))
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "f.txt")
    data = [{"a": [i, i + 1, (i, str(i))], "b": {"c": i}} for i in range(20000)]

    def opens() -> None:
        for _ in range(4000):
            with open(path, "a", encoding="utf-8") as f:
                f.write("x")

    def ids() -> None:
        for i in range(300000):
            id(i)

    result = {
        "open_us": best(opens) / 4000 * 1e6,
        "id_ns": best(ids) / 300000 * 1e9,
        "deepcopy_ms": best(lambda: copy.deepcopy(data)) * 1e3,
    }
    os.remove(path)
    os.rmdir(folder)
    print(json.dumps(result))


main()
