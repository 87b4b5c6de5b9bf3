"""Ground truth and honest-FAU controls of one training variant, on round 0 only.

Trains a preset (default ``phantom-default``) with overrides on one round (fold 0, the weights
the records use) of a phantom, records it, analyses it, builds its untrained null and prints
two figures side by side:

- **GT**: the ground-truth table of ``bench/bench_fau_groundtruth.py`` (best conv3 filter per AU
  group; a group passes when both its top-16 AU share and its spatial share are >= 70 %);
- **groups**: the ground-truth AU groups with at least one filter (any recorded layer) that passes
  the beyond-emotion stage of the funnel of :mod:`fercore.analysis.criteria` (raw, distinct,
  within-emotion test), next to the untrained null network's count.

It is the script behind the table of variants in docs/honest_fau.md.

Usage::

    FERCORE_CACHE=/tmp/variants python bench/bench_honest_variants.py [--over '{"au_weight": 3.0}']
        [--p-drop 0.15] [--p-extra 0.3] [--variation 1.0] [--preset phantom-default]

``--over`` is a JSON object of ModelSpec / TrainConfig fields (see ``fercore.training.presets.resolve``).
Stages are cached under ``$FERCORE_CACHE`` (default: a ``bench-variants`` folder in the system
temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--over", default="{}", help="JSON object of preset overrides")
    ap.add_argument("--p-drop", type=float, default=0.15)
    ap.add_argument("--p-extra", type=float, default=0.3)
    ap.add_argument("--extra-max", type=int, default=3, help="highest intensity of an extra AU (1-5)")
    ap.add_argument("--variation", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=2400)
    ap.add_argument("--preset", default="phantom-default")
    args = ap.parse_args(argv)
    os.environ.setdefault("FERCORE_CACHE", str(Path(tempfile.gettempdir()) / "bench-variants"))
    try:
        over = json.loads(args.over)
        if not isinstance(over, dict):
            raise ValueError
    except ValueError:
        ap.error(f"--over: expected a JSON object such as '{{\"au_weight\": 3.0}}', got {args.over!r}")

    from bench_fau_groundtruth import GROUPS, groundtruth_table

    from fercore.analysis.analyze import analyze
    from fercore.data.phantom import generate_faceset
    from fercore.pipeline import phantom_path
    from fercore.recording.record import record
    from fercore.store.faceset_h5 import save_faceset
    from fercore.store.reader import open_run
    from fercore.training.presets import train_preset

    opts = dict(n=args.n, size=48, seed=0, au_variation=args.variation, p_drop=args.p_drop, p_extra=args.p_extra)
    if args.extra_max != 3:  # the default's options (and cache name) stay as they were
        opts["extra_max"] = args.extra_max
    path = phantom_path(opts)
    if not path.exists():
        save_faceset(generate_faceset(**opts), path)
    t0 = time.perf_counter()
    run = train_preset(path, args.preset, folds=(0,), **over)
    t1 = time.perf_counter()
    record(run)
    analyze(run, null="untrained")
    reader = open_run(run)
    rows = groundtruth_table(reader)
    gt = sum(r["share"] >= 0.7 and r["spatial"] >= 0.7 for r in rows)
    found = set()
    for layer in reader.layers:
        ev = reader.evidence(layer)
        ids = [int(a) for a in ev["au_ids"]]
        for group in GROUPS:
            cols = [ids.index(a) for a in group if a in ids]
            if cols and ev["beyond_emotion"][:, cols].any():
                found.add(group)
    acc = ((reader.metrics or {}).get("folds") or [{}])[0].get("test_acc")
    names = ["+".join(map(str, g)) for g in GROUPS if g in found]
    print(f"run {reader.name}: preset {args.preset}, overrides {over or 'none'}, phantom {opts}")
    print(f"  training {t1 - t0:.0f} s, round-0 test accuracy {acc if acc is None else f'{acc:.3f}'}")
    print(f"  GT {gt} / {len(rows)}: " + " ".join(f"{r['group']} {r['share']:.0%}/{r['spatial']:.0%}" for r in rows))
    print(f"  groups with a filter beyond emotion: {len(found)} / {len(GROUPS)}: {', '.join(names) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
