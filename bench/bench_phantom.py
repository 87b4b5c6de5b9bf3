"""Phantom faces: generation speed on one core, AU placement, AU learnability, data-set balance.

Prints:

1. faces per second of :func:`fercore.phantom.generate_faceset` at 48, 64 and 128 px on one
   core (OpenCV and BLAS limited to one thread, torch never imported): the best and the median
   wall-clock rate of five runs, and the best rate in CPU time of this process; the target is
   >= 500 faces/s at 64 px (on a shared machine read the best of the runs);
2. for every drawn AU, the share of the pixel change (with and without the AU at intensity C,
   no nuisance) inside the AU's region from :func:`fercore.facs.region_mask` (target >= 80%),
   over several identities;
3. the subject-independent ROC AUC of a numpy linear probe (ridge on landmark-aligned pixels)
   for each AU's presence (target >= 0.85), and the same probe's emotion accuracy with natural
   AU variation and with AUs determined by the emotion;
4. class balance and subject/fold separation of the generated set.

Usage::

    python bench/bench_phantom.py [--n 1000] [--n-probe 3200] [--size 64]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from fercore.analysis.probe import au_presence_auc, emotion_probe_accuracy  # noqa: E402
from fercore.data import facs  # noqa: E402
from fercore.data import phantom as ph  # noqa: E402


def speed(n: int, size: int, repeats: int = 5) -> tuple[float, float, float]:
    """Faces/s of generate_faceset: best and median wall-clock, and best CPU-time, of ``repeats``
    runs of ``n // repeats`` faces each (the best of several runs is the least disturbed by other
    processes on a shared machine, as timeit reports)."""
    ph.generate_faceset(min(n, 64), size=size, seed=99)  # warm the caches of the code path
    per = max(1, n // repeats)
    walls, cpus = [], []
    for r in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        ph.generate_faceset(per, size=size, seed=1 + r)
        walls.append(per / (time.perf_counter() - w0))
        cpus.append(per / (time.process_time() - c0))
    return max(walls), float(np.median(walls)), max(cpus)


def region_shares(size: int, n_identities: int = 10) -> dict[int, tuple[float, float]]:
    out = {}
    for a in ph.DRAWN_AUS:
        shares = []
        for seed in range(n_identities):
            idn = ph.random_identity(np.random.default_rng(seed))
            base, _ = ph.render_face(idn, {}, size=size)
            img, lm = ph.render_face(idn, {a: 3}, size=size)
            d = np.abs(img.astype(np.float64) - base)
            shares.append(d[facs.region_mask(lm, a, d.shape)].sum() / d.sum())
        out[a] = (min(shares), float(np.mean(shares)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="faces per speed measurement")
    ap.add_argument("--n-probe", type=int, default=3200, help="faces for the linear probe")
    ap.add_argument("--size", type=int, default=64, help="image size of the probe and region checks")
    args = ap.parse_args()
    cv2.setNumThreads(1)

    print(f"== speed (one core, {args.n} faces in 5 runs; best and median wall-clock, best CPU time) ==")
    for size in (48, 64, 128):
        best, median, cpu = speed(args.n, size)
        print(f"  {size:>3} px: {best:7.0f} faces/s wall (best), {median:7.0f} (median), {cpu:7.0f} faces/s CPU")
    assert "torch" not in sys.modules, "the phantom must not import torch"

    print(f"\n== AU change inside its region ({args.size} px, intensity C, 10 identities; target >= 80%) ==")
    for a, (lo, mean) in region_shares(args.size).items():
        print(f"  AU{a:<3} {facs.au(a).name:<26} min {lo:6.1%}  mean {mean:6.1%}")

    print(f"\n== linear probe on aligned pixels, {args.n_probe} faces at {args.size} px, "
          "5-fold subject-independent ==")
    t0 = time.perf_counter()
    fs = ph.generate_faceset(args.n_probe, size=args.size, seed=3)
    auc = au_presence_auc(fs)
    present = (fs.aus > 0).sum(axis=0)
    for (a, v), k in zip(auc.items(), present, strict=True):
        flag = "" if v >= 0.85 else "   << below 0.85"
        print(f"  AU{a:<3} ROC AUC {v:.3f}   ({k} images with the AU){flag}")
    acc = emotion_probe_accuracy(fs)
    fixed = ph.generate_faceset(args.n_probe, size=args.size, seed=3, au_variation=0.0)
    acc_fixed = emotion_probe_accuracy(fixed)
    print(f"  emotion accuracy of the same probe: {acc:.1%} (natural AU variation), "
          f"{acc_fixed:.1%} (AUs determined by the emotion)  [{time.perf_counter() - t0:.0f} s]")

    print("\n== data set ==")
    print("  " + fs.summary().replace("\n", "\n  "))
    counts = np.bincount(fs.labels, minlength=len(fs.class_names))
    print(f"  class counts differ by at most {counts.max() - counts.min()} image(s)")
    per_subject_folds = {s: set(fs.folds[fs.subjects == s]) for s in np.unique(fs.subjects)}
    print(f"  subjects in more than one fold: {sum(len(f) > 1 for f in per_subject_folds.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
