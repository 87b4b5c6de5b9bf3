"""The dashboard's first start: how long until the first complete view, and until the full default.

On an empty cache (a temporary folder) the dashboard builds the default's first look -- one round
of the ten trained, recorded, its untrained null recorded, analysed (``build_default(first_look=
True)``) -- opens its views on it, and trains the full default in the background
(``build_default()``). This times both in one process, one after the other, as the server does,
and prints the reference workload beside them: the machine's cores, its load average, and the
seconds per step of the reference workload (``app.jobs.reference_step``) against the reference
machine's (``app.jobs.REFERENCE_STEP_SECONDS``: two free cores), so that a figure measured on a
busy machine can be read. Target: the first look within 60 s on two free cores.

Usage::

    python bench/bench_first_look.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", help="build into this cache folder and keep it (default: a temporary one, removed)")
    args = ap.parse_args()
    cache = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-first-look-"))
    os.environ["FERCORE_CACHE"] = str(cache)
    from app.jobs import REFERENCE_STEP_SECONDS, reference_step

    def workload() -> str:
        step = reference_step()
        return (f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, reference step {1000 * step:.1f} ms "
                f"(reference machine, two free cores: {1000 * REFERENCE_STEP_SECONDS:.1f} ms; pace "
                f"{step / REFERENCE_STEP_SECONDS:.2f})")

    from fercore.pipeline import build_default

    try:
        print(f"cache {cache}; before: {workload()}", flush=True)
        t0 = time.perf_counter()
        first = build_default(first_look=True)
        t1 = time.perf_counter()
        print(f"first look (one round trained, recorded, null, analysed): {t1 - t0:.1f} s -> {first.name}", flush=True)
        full = build_default()
        t2 = time.perf_counter()
        print(f"full default in the background after it (10 rounds, recorded, null, analysed): {t2 - t1:.1f} s "
              f"-> {full.name}; first complete view at {t1 - t0:.1f} s, everything at {t2 - t0:.1f} s", flush=True)
        print(f"after: {workload()}")
    finally:
        if not args.keep:
            shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
