"""The web UI benchmark (tests/bench/bench_ui.mjs) as run by run_all.py:
compiles the recording generator bench_ui_gen.c against the build's protocol
library, then runs the browser benchmark with node. Needs frontend/node_modules
(npm ci) and a built frontend/dist."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]
MICROLOGD = Path(os.environ.get("MICROLOGD", SRC / "build" / "collector" / "micrologd"))
BUILD = Path(os.environ.get("ML_BUILD_DIR", MICROLOGD.parents[1]))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp) / "bench_ui_gen"
        subprocess.run(["cc", "-O2", "-o", str(gen), str(SRC / "tests/bench/bench_ui_gen.c"),
                        "-I", str(BUILD / "proto/gen"), "-I", str(SRC / "proto"),
                        str(BUILD / "proto/libml_proto.a"), "-lnng", "-lprotobuf-c", "-llz4",
                        "-lpthread"], check=True)
        env = dict(os.environ, MICROLOGD=str(MICROLOGD))
        return subprocess.call(["node", str(SRC / "tests/bench/bench_ui.mjs"), str(gen)], env=env)


if __name__ == "__main__":
    sys.exit(main())
