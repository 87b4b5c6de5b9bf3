"""Cost of the null network: it must add no more than one more recording pass.

Times, in one process and one after the other, (a) recording and analysing a trained run from
scratch and (b) building its untrained null network (:func:`fercore.null.ensure_null`: new
weights, record, analyse on the same data), and prints both and their ratio. The target is a ratio
of at most about 1.0 (plus the few milliseconds of writing the null's weights). A second
``ensure_null`` call is timed too: it must be a cache hit.

Usage::

    python bench/bench_null.py [--run RUN] [--n 2400] [--k 16] [--repeat 2]

Without ``--run`` a phantom run (one round, ``phantom-default`` preset) is built or reused under
``$FERCORE_CACHE`` (default: a ``bench-null`` folder in the system temporary directory). Timings
on a shared machine are noisy; the ratio, measured in one run with the passes interleaved, is the
figure to compare.
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


def _run(args) -> Path:
    from fercore.data.phantom import generate_faceset
    from fercore.pipeline import phantom_path
    from fercore.store.faceset_h5 import save_faceset
    from fercore.training.presets import train_preset

    opts = dict(n=args.n, size=48, seed=0)
    path = phantom_path(opts)
    if not path.exists():
        save_faceset(generate_faceset(**opts), path)
    return Path(train_preset(path, "phantom-default", folds=(0,)))


def _record_and_analyze(run: Path, k: int) -> float:
    from fercore.recording.record import record
    from fercore.store.layout import records_path

    records_path(run).unlink(missing_ok=True)
    t0 = time.perf_counter()
    record(run, k=k)
    from fercore.analysis.analyze import analyze

    analyze(run, null=None)
    return time.perf_counter() - t0


def _null(run: Path) -> float:
    from fercore.analysis.analyze import analyze
    from fercore.analysis.nulls import ensure_null

    shutil.rmtree(run / "null", ignore_errors=True)
    t0 = time.perf_counter()
    analyze(ensure_null(run), null=None)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="an existing trained run (default: build a phantom run)")
    ap.add_argument("--n", type=int, default=2400, help="phantom images when building the run (default 2400)")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=2, help="interleaved repetitions; the minimum of each is reported")
    args = ap.parse_args()
    os.environ.setdefault("FERCORE_CACHE", str(Path(tempfile.gettempdir()) / "bench-null"))

    from fercore.analysis.nulls import ensure_null
    from fercore.store.layout import resolve_run
    from fercore.store.reader import open_run

    run = resolve_run(args.run) if args.run else _run(args)
    print(f"run {run.name} (cache {os.environ['FERCORE_CACHE']})", flush=True)
    t_run, t_null = [], []
    for i in range(args.repeat):
        t_run.append(_record_and_analyze(run, args.k))
        t_null.append(_null(run))
        print(f"  pass {i + 1}: run record+analyze {t_run[-1]:.2f} s, null build+record+analyze {t_null[-1]:.2f} s", flush=True)
    t0 = time.perf_counter()
    ensure_null(run)
    t_hit = time.perf_counter() - t0
    reader = open_run(run)
    print(f"images {reader.header['n']}, layers {', '.join(reader.layers)}, k {reader.header['k']}")
    print(f"run record+analyze: {min(t_run):.2f} s (min of {args.repeat})")
    print(f"null (untrained) weights+record+analyze: {min(t_null):.2f} s (min of {args.repeat})")
    print(f"ratio null / run: {min(t_null) / min(t_run):.2f}  (target <= 1.0 + noise: one more recording pass)")
    print(f"cached ensure_null: {t_hit * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
