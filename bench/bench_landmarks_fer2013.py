"""68-point landmarks on the real FER2013 faces: plausible share per split, mean geometry, speed.

Runs :func:`fercore.data.landmarks.fit_precropped` on every face of ``fer2013.csv`` (or a seeded
random sample) and prints:

1. per Usage split (Training, PublicTest, PrivateTest): faces, the share with a plausible fit, the
   share where the HOG detector found the face (else the whole-image box was used), and the most
   common reasons for rejection;
2. with ``--ferplus fer2013new.csv``: the plausible share among faces the FER+ taggers call not a
   face (NF >= 5 of 10 votes, or dropped by FER+) and among the rest;
3. the mean eye and mouth centres (fractions of the 48 px side) over plausible fits, per split and
   overall, i.e. :func:`fercore.data.landmarks.estimate_geometry`, and its similarity to
   ``CANONICAL`` -- the numbers ``CANONICAL`` was chosen from;
4. the median detector box on a sample of faces where it fired (``PRECROPPED_BOX``);
5. time per face on one core (each worker process is one core; OpenCV limited to one thread;
   dlib is single-threaded), median and range over chunks.

The CSV is a local file (never committed; see docs/datasets.md). Tests do not need this script.

Usage::

    python bench/bench_landmarks_fer2013.py cache/external/fer2013/fer2013.csv \
        [--ferplus cache/external/fer2013/fer2013new.csv] [--n 0] [--seed 0] [--workers 2] \
        [--save cache/external/fer2013/landmarks.npz]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from fercore.data import landmarks as lmk  # noqa: E402

SPLITS = ("Training", "PublicTest", "PrivateTest")


def read_fer2013(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 48, 48) uint8 faces, (N,) int emotion, (N,) str Usage, in file order."""
    faces, emotion, usage = [], [], []
    with open(path) as f:
        header = f.readline().strip().split(",")
        if header != ["emotion", "pixels", "Usage"]:
            raise SystemExit(f"{path}: expected the header emotion,pixels,Usage, got {header}")
        for line in f:
            e, p, u = line.rstrip("\n").split(",")
            faces.append(np.array(p.split(), dtype=np.uint8).reshape(48, 48))
            emotion.append(int(e))
            usage.append(u)
    return np.stack(faces), np.array(emotion), np.array(usage)


def read_ferplus_nf(path: Path, n: int) -> np.ndarray:
    """(N,) bool: FER+ calls the image not a face (NF >= 5 votes) or dropped it (no image name)."""
    lines = Path(path).read_text().splitlines()
    header = lines[0].split(",")
    if len(lines) - 1 != n or header[1] != "Image name" or header[-1] != "NF":
        raise SystemExit(f"{path}: expected fer2013new.csv with {n} rows, got {len(lines) - 1} and {header}")
    out = np.zeros(n, dtype=bool)
    for i, line in enumerate(lines[1:]):
        cols = line.split(",")
        out[i] = cols[1].strip() == "" or int(cols[-1]) >= 5
    return out


def _work(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    cv2.setNumThreads(1)
    lms, oks, reasons = [], [], []
    t0 = time.process_time()
    for face in chunk:
        lm, ok, reason = lmk.fit_precropped(face)
        lms.append(lm)
        oks.append(ok)
        reasons.append(reason)
    return np.stack(lms), np.array(oks), reasons, time.process_time() - t0


def fmt_geometry(g: dict) -> str:
    t = g["template"]
    return (f"right eye ({t[0, 0]:.3f}, {t[0, 1]:.3f})  left eye ({t[1, 0]:.3f}, {t[1, 1]:.3f})  "
            f"mouth ({t[2, 0]:.3f}, {t[2, 1]:.3f})  [n={g['n']}; to CANONICAL: scale {g['scale']:.3f}, "
            f"angle {g['angle']:+.2f} deg, residual {g['residual']:.4f}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", type=Path, help="fer2013.csv (emotion,pixels,Usage)")
    ap.add_argument("--ferplus", type=Path, default=None, help="fer2013new.csv, for the not-a-face check")
    ap.add_argument("--n", type=int, default=0, help="random sample of this many faces (0: all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample")
    ap.add_argument("--workers", type=int, default=2, help="processes, one core each")
    ap.add_argument("--save", type=Path, default=None, help="write landmarks, flags and reasons to this .npz")
    args = ap.parse_args()
    cv2.setNumThreads(1)

    t0 = time.perf_counter()
    faces, emotion, usage = read_fer2013(args.csv)
    nf = read_ferplus_nf(args.ferplus, len(faces)) if args.ferplus else None
    print(f"read {len(faces)} faces from {args.csv} in {time.perf_counter() - t0:.0f} s; "
          + ", ".join(f"{s} {np.sum(usage == s)}" for s in SPLITS))
    idx = np.arange(len(faces))
    if args.n and args.n < len(faces):
        idx = np.sort(np.random.default_rng(args.seed).choice(len(faces), args.n, replace=False))
        print(f"seeded random sample: {len(idx)} faces (seed {args.seed})")
    lmk.fit_precropped(faces[0])  # load the models before forking: shared, read-only

    chunks = np.array_split(idx, max(1, len(idx) // 250))
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(args.workers) as pool:
        results = pool.map(_work, [faces[c] for c in chunks], chunksize=1)
    wall = time.perf_counter() - t0
    landmarks = np.concatenate([r[0] for r in results])
    ok = np.concatenate([r[1] for r in results])
    reasons = [s for r in results for s in r[2]]
    per_face = np.array([r[3] / len(c) for r, c in zip(results, chunks, strict=True)]) * 1000
    detected = np.array([s.startswith("detected") for s in reasons])
    u = usage[idx]

    print(f"\n== plausible 68-point fits (fit_precropped, x4 cubic upscale), {len(idx)} faces ==")
    print(f"  {'split':<12} {'faces':>6} {'plausible':>10} {'detected':>9}")
    for s in (*SPLITS, "all"):
        m = np.ones(len(idx), bool) if s == "all" else u == s
        print(f"  {s:<12} {m.sum():>6} {ok[m].mean():>10.1%} {detected[m].mean():>9.1%}")
    print(f"  plausible when detected {ok[detected].mean():.1%}, on the whole-image box {ok[~detected].mean():.1%}")
    print("  most common rejections:")
    kinds = collections.Counter(s.split(" (")[0] for s, g in zip(reasons, ok, strict=True) if not g)
    for k, c in kinds.most_common(8):
        print(f"    {c:>5}  {k}")
    if nf is not None:
        f = nf[idx]
        print("\n== against FER+ (not a face: NF >= 5 of 10 votes, or dropped by FER+) ==")
        print(f"  FER+ not a face: {f.sum()} faces, plausible {ok[f].mean():.1%} (rejected {1 - ok[f].mean():.1%})")
        print(f"  FER+ a face:     {(~f).sum()} faces, plausible {ok[~f].mean():.1%}")

    print("\n== mean geometry over plausible fits (fractions of the 48 px side) ==")
    for s in (*SPLITS, "all"):
        m = (np.ones(len(idx), bool) if s == "all" else u == s) & ok
        if m.any():
            g = lmk.estimate_geometry(landmarks[m], size=48)
            print(f"  {s:<12} {fmt_geometry(g)}")
    g = lmk.estimate_geometry(landmarks, size=48, plausible=ok)
    print(f"  per-face spread (std): right eye {g['std'][0].round(3).tolist()}, left eye "
          f"{g['std'][1].round(3).tolist()}, mouth {g['std'][2].round(3).tolist()}")
    print(f"  CANONICAL = {np.asarray(lmk.CANONICAL).tolist()}")

    sample = idx[np.random.default_rng(args.seed + 1).permutation(len(idx))[:2000]]
    boxes = []
    for i in sample:
        big = cv2.resize(faces[i], (192, 192), interpolation=cv2.INTER_CUBIC)
        found = [b for b in lmk.detect_faces(big, upsample=0)
                 if 48 <= b[0] + b[2] / 2 <= 144 and 48 <= b[1] + b[3] / 2 <= 144]
        if found:
            boxes.append(np.array(found[0]) / 192)
    boxes = np.array(boxes)
    q = np.median(boxes, axis=0)
    print(f"\n== detector box on the x4 image, {len(boxes)} of {len(sample)} sampled faces where it fired ==")
    print(f"  median (x, y, w, h) fractions {q.round(3).tolist()}; PRECROPPED_BOX = {lmk.PRECROPPED_BOX}")

    print(f"\n== speed (one core per process, {args.workers} processes) ==")
    print(f"  fit_precropped: median {np.median(per_face):.1f} ms per face "
          f"(range {per_face.min():.1f}-{per_face.max():.1f} over {len(chunks)} chunks of ~250); "
          f"wall {wall:.0f} s for {len(idx)} faces")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save, index=idx, landmarks=landmarks, plausible=ok,
                            reasons=np.array(reasons), usage=u)
        print(f"  saved {args.save}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
