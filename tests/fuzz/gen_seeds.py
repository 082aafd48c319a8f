#!/usr/bin/env python3
"""Seed corpora from a real recorded run.

Records a run with the real client (ml_drive, libmicrolog, --spool-only so
no network is needed: the spool file holds the exact request envelopes),
then has ml_fuzz_seeds replay it into a real collector and cut the result
into one seed directory per fuzz target under OUT (see gen_seeds.c).

    gen_seeds.py --drive BUILD/tests/ml_drive --tool BUILD/tests/fuzz/ml_fuzz_seeds --out DIR
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drive", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ml_fuzz_seed_") as tmp:
        env = dict(os.environ, MICROLOG_SPOOL_DIR=os.path.join(tmp, "spool"),
                   MICROLOG_AUTOSTART="0", MICROLOG_SERVER="http://127.0.0.1:9")
        # 400 samples at 1 kHz with logs and status ticks: several batches,
        # every message kind and table appears, the files stay a few KiB.
        subprocess.run([args.drive, "--spool-only", "--label", "fuzz-seed", "--samples", "400",
                        "--rate", "1000", "--log-every", "25", "--status-every", "20"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        spools = glob.glob(os.path.join(tmp, "spool", "*.mlspool"))
        if len(spools) != 1:
            print(f"gen_seeds: expected one spool file, found {spools}", file=sys.stderr)
            return 1
        subprocess.run([args.tool, spools[0], args.out], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
