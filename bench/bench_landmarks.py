"""68-point landmarks (dlib HOG detector + shape predictor): speed on one core.

Prints, as milliseconds per face (median and range over ``--repeats`` repeats of the wall-clock
time, and the median CPU time of the process, which a busy shared machine disturbs less):

1. HOG detection + 68-point fit on the astronaut (``skimage.data.astronaut()``, 512 px), and on
   the same photo upscaled to 2048 px (searched on a 1024 px copy);
2. HOG detection + fit on the 100 LFW faces of ``skimage.data.lfw_subset()`` upscaled 4x
   (25 -> 100 px), with the share detected;
3. the fit alone on a given box (the astronaut's);
4. :func:`fercore.data.landmarks.fit_precropped` on 48 px faces (the LFW faces resized to 48 px,
   or the first faces of a local ``fer2013.csv`` with ``--fer2013``), which includes the
   appearance check of :func:`~fercore.data.landmarks.plausibility`;
5. :func:`~fercore.data.landmarks.face_score` alone and :func:`~fercore.data.landmarks.align_face`
   to 96 px.

One core: OpenCV limited to one thread, BLAS/OpenMP to one; dlib is single-threaded; torch is
never imported. The models load once before timing (their load time is printed first).

Usage::

    python bench/bench_landmarks.py [--repeats 7] [--fer2013 cache/external/fer2013/fer2013.csv]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402

from fercore.data import landmarks as lmk  # noqa: E402


def per_item_ms(fn: Callable[[object], object], items: list,
                repeats: int) -> tuple[float, float, float, float]:
    """Median, min and max over ``repeats`` runs of the mean wall-clock milliseconds per item, and
    the median CPU milliseconds of this process per item (less disturbed on a shared machine)."""
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for it in items:
            fn(it)
        walls.append(1000 * (time.perf_counter() - w0) / len(items))
        cpus.append(1000 * (time.process_time() - c0) / len(items))
    return float(np.median(walls)), float(min(walls)), float(max(walls)), float(np.median(cpus))


def detect_and_fit(grey: np.ndarray, **kw) -> int:
    boxes = lmk.detect_faces(grey, **kw)
    for b in boxes[:1]:
        lmk.fit_landmarks(grey, b)
    return len(boxes)


def read_fer2013(path: Path, n: int) -> list[np.ndarray]:
    with open(path) as f:
        next(f)
        return [np.array(line.split(",")[1].split(), dtype=np.uint8).reshape(48, 48)
                for line in itertools.islice(f, n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="repeats of every measurement")
    ap.add_argument("--fer2013", type=Path, default=None,
                    help="time fit_precropped on the first 100 faces of this fer2013.csv")
    args = ap.parse_args()
    cv2.setNumThreads(1)

    t0 = time.perf_counter()
    lmk.fit_landmarks(np.zeros((64, 64), np.uint8), (8, 8, 48, 48))
    print(f"models loaded in {time.perf_counter() - t0:.2f} s (predictor {lmk.predictor_path().stat().st_size / 1e6:.1f} MB)")

    astro = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    astro_big = cv2.resize(astro, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    box = lmk.detect_faces(astro)[0]
    lm = lmk.fit_landmarks(astro, box)
    lfw = (skimage.data.lfw_subset()[:100] * 255).round().astype(np.uint8)
    lfw100 = [cv2.resize(f, (100, 100), interpolation=cv2.INTER_CUBIC) for f in lfw]
    faces48 = (read_fer2013(args.fer2013, 100) if args.fer2013
               else [cv2.resize(f, (48, 48), interpolation=cv2.INTER_CUBIC) for f in lfw])
    src48 = f"first 100 faces of {args.fer2013}" if args.fer2013 else "100 LFW faces resized to 48 px"
    hits = np.mean([detect_and_fit(f) > 0 for f in lfw100])

    rows = [
        ("detect + fit, astronaut 512 px (upsample 1)", per_item_ms(detect_and_fit, [astro], args.repeats), 1),
        ("detect + fit, astronaut 2048 px (1024 px copy, upsample 1)",
         per_item_ms(detect_and_fit, [astro_big], args.repeats), 1),
        (f"detect + fit, LFW faces x4 = 100 px (upsample 1; {hits:.0%} detected)",
         per_item_ms(detect_and_fit, lfw100, args.repeats), len(lfw100)),
        ("fit only, astronaut box", per_item_ms(lambda b: lmk.fit_landmarks(astro, b), [box] * 50, args.repeats), 50),
        (f"fit_precropped, {src48}", per_item_ms(lmk.fit_precropped, faces48, args.repeats), len(faces48)),
        ("face_score (appearance check), astronaut", per_item_ms(lambda m: lmk.face_score(astro, m), [lm] * 20,
                                                                 args.repeats), 20),
        ("align_face to 96 px, astronaut", per_item_ms(lambda m: lmk.align_face(astro, m, 96), [lm] * 50,
                                                       args.repeats), 50),
    ]
    assert "torch" not in sys.modules, "the landmark benchmark must not import torch"

    print(f"\n== milliseconds per face, one core, {args.repeats} repeats ==")
    print(f"  {'what':<72} {'median':>8} {'range (wall)':>15} {'CPU':>8}  faces/repeat")
    for what, (med, lo, hi, cpu), n in rows:
        print(f"  {what:<72} {med:8.2f} {lo:7.2f}-{hi:<7.2f} {cpu:8.2f}  {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
