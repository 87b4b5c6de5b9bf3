"""Ground truth on the phantom: does the filter-AU analysis find the AUs the phantom draws?

Builds (or reuses, everything is cached) a run on the default phantom FaceSet
(``fercore.training.presets.DEFAULT_PHANTOM``): the ``phantom-multitask`` training preset (the
default network taught the AUs too, so its filters are known to carry them; ``--preset
phantom-default`` for the emotion-only default), ``record`` (k=16) and ``analyze``. Then, for each AU group of the table, over the filters of the last conv layer:

- share: the fraction of the filter's top-16 images that carry the group (for "1+2" and "25+26"
  an image carries the group if it carries either AU);
- spatial: the fraction of its top-16 argmax positions (receptive-field centres, input pixels)
  inside the group's face region (the union of the AUs' regions, ``fercore.data.facs.in_region`` on
  that image's landmarks);
- best filter: the filter with the highest ``min(share, spatial)``, ties broken by the larger
  point-biserial correlation (max over the group's AUs).

A group passes when both shares are at least 70%; the target for the multi-task run is at least 7 of 9 groups.

Run: ``python bench/bench_fau_groundtruth.py [--preset phantom-multitask] [--run RUN] [--distinct]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fercore.data.facs import in_region

GROUPS = [(1, 2), (4,), (5,), (6,), (9,), (12,), (15,), (20,), (25, 26)]


def build_default_run(progress=None, preset: str = "phantom-default"):
    """A run on the default phantom: what the dashboard builds (phantom data -> ``preset`` ->
    record -> untrained null -> analyze), every stage cached."""
    from fercore.pipeline import build_run

    t0 = time.perf_counter()
    run_dir = build_run(preset=preset, null="untrained", progress=progress)
    print(f"run {run_dir} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return run_dir


def groundtruth_table(reader, layer: str | None = None, *, distinct: bool = False) -> list[dict]:
    """One row per AU group: best filter of ``layer`` (default the last recorded), its shares
    (over the raw top-K, or the distinct top-K with one image per sequence/subject)."""
    layer = layer or reader.layers[-1]
    fs = reader.faceset()
    present = fs.au_present
    au_col = {int(a): i for i, a in enumerate(fs.au_ids)}
    r_au = reader.evidence(layer)["r_au"]
    landmarks = fs.landmarks * (reader.header["image_size"] / fs.size)
    nf = reader.n_filters(layer)
    rows = []
    for group in GROUPS:
        cols = [au_col[a] for a in group if a in au_col]
        if not cols:
            rows.append({"group": "+".join(map(str, group)), "filter": -1, "share": np.nan, "spatial": np.nan,
                         "corr": np.nan, "n_groups": 0})
            continue
        best = None
        for f in range(nf):
            t = reader.topk(layer, f, distinct=distinct)
            idx = t.index[t.index >= 0]
            carries = np.nanmax(present[np.ix_(idx, cols)], axis=1) > 0
            share = float(carries.mean())
            box = t.box[t.index >= 0]
            centres = np.stack([(box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2], 1)
            inside = [any(bool(in_region(landmarks[i], a, centres[j:j + 1])[0]) for a in group)
                      for j, i in enumerate(idx)]
            spatial = float(np.mean(inside))
            corr = float(np.nanmax(r_au[f, cols]))
            key = (min(share, spatial), corr)
            if best is None or key > best[0]:
                best = (key, {"group": "+".join(map(str, group)), "filter": f, "share": share,
                              "spatial": spatial, "corr": corr})
        rows.append(best[1])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="use this run instead of building one")
    ap.add_argument("--preset", default="phantom-multitask",
                    help="the preset to build on the default phantom (default phantom-multitask: taught the AUs, the "
                         "network whose filters are known to carry them; phantom-default: the emotion-only default)")
    ap.add_argument("--layer", default=None, help="layer (default the last recorded conv layer)")
    ap.add_argument("--distinct", action="store_true", help="use the distinct top-K (one image per group)")
    args = ap.parse_args(argv)
    from fercore.store.reader import open_run

    run_dir = args.run or build_default_run(preset=args.preset)
    reader = open_run(run_dir)
    layer = args.layer or reader.layers[-1]
    rows = groundtruth_table(reader, layer, distinct=args.distinct)
    acc = (reader.metrics or {}).get("mean_test_acc")
    print(f"\nrun {reader.name}, layer {layer} ({reader.n_filters(layer)} filters), "
          f"{'distinct ' if args.distinct else ''}top-{reader.header['k']} of {reader.header['n']} images, weights fold {reader.header['fold']}"
          + (f", mean test accuracy {acc}" if acc is not None else ""))
    print("\n| AU group | best filter | top-16 share with AU | top-16 argmax in AU region | corr | pass |")
    print("|---|---|---|---|---|---|")
    passed = 0
    for r in rows:
        ok = r["share"] >= 0.7 and r["spatial"] >= 0.7
        passed += ok
        print(f"| {r['group']} | {r['filter']} | {r['share']:.0%} | {r['spatial']:.0%} | {r['corr']:.2f} | "
              f"{'yes' if ok else 'no'} |")
    taught = reader.au_targets
    print(f"\n{passed} of {len(rows)} groups have both shares >= 70% "
          + ("(target for a network taught the AUs: at least 7)" if taught else
             "(a network trained on the emotions only: what it learns by itself, no target)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
