"""Import speed: FER2013-sized CSVs, the 68-point fits, and a folder of 1,000 photos.

Synthesises fer2013.csv and a matching fer2013new.csv in a temporary folder (random pixels,
random votes), then times ``import_dataset("fer2013", ...)`` without landmarks (target: under 60 s
for 35,887 rows) and with the FER+ labels, and a second, cached import; then the same import with
the 68-point fits (the default) on ``--landmark-rows`` rows, the per-face cost and what the whole
file costs at it; then a class-per-folder tree of ``--photos`` photographs (scikit-image's
astronaut and LFW faces, at random scale, shift and turn, as PNG and JPEG) imported with the
default options (dlib detection, 68 points, canonical crop); then face preprocessing of a 1024 px
and an 8000 px photo. Prints the figures; exits 1 if the CSV target is missed.

    python bench/bench_import.py [--rows 35887] [--target 60] [--landmark-rows 4000] [--photos 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fercore.data.preprocess import PreprocessOptions, preprocess_face
from fercore.pipeline import import_dataset

_CHILDREN = [0.0]


def _children_cpu() -> float:
    """CPU seconds of finished child processes (the import's workers) since the last call."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = r.ru_utime + r.ru_stime
    out, _CHILDREN[0] = total - _CHILDREN[0], total
    return out


def _photo_tree(root: Path, n: int) -> Path:
    """``n`` photographs in two class folders: the astronaut and LFW faces (upscaled), each at a
    random scale, shift and in-plane turn on a plain background, PNG or JPEG."""
    import cv2
    from PIL import Image
    from skimage import data as skdata

    rng = np.random.default_rng(0)
    sources = [cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)]
    sources += [cv2.resize((f * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC)
                for f in skdata.lfw_subset()[:100]]
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    for i in range(n):
        src = sources[i % len(sources)]
        side = int(rng.integers(320, 640))
        canvas = np.full((side, side), int(rng.integers(40, 220)), np.uint8)
        s = int(side * rng.uniform(0.5, 0.9))
        face = cv2.resize(src, (s, s), interpolation=cv2.INTER_AREA)
        m = cv2.getRotationMatrix2D((s / 2, s / 2), float(rng.uniform(-10, 10)), 1.0)
        face = cv2.warpAffine(face, m, (s, s), borderMode=cv2.BORDER_REPLICATE)
        x, y = (int(v) for v in rng.integers(0, side - s + 1, 2))
        canvas[y:y + s, x:x + s] = face
        ext = ".png" if i % 2 else ".jpg"
        Image.fromarray(canvas).save(root / ("a", "b")[i % 2] / f"s{i % 50:02d}_{i:04d}{ext}")
    return root


def _big_photo_timing() -> None:
    """Detection + alignment of a 1024 px and an 8000 px photo (the 8000 px one is searched on
    a downscaled copy, so it should cost about the same plus one area resize)."""
    import cv2
    from skimage import data as skdata

    grey = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)
    opts = PreprocessOptions(size=96)
    times = {}
    for side in (1024, 8000):
        img = cv2.resize(grey, (side, side), interpolation=cv2.INTER_LINEAR)
        preprocess_face(img, opts)  # warm-up (cascade load)
        t0 = time.perf_counter()
        for _ in range(3):
            preprocess_face(img, opts)
        times[side] = (time.perf_counter() - t0) / 3
    print(f"face preprocessing, 1024x1024 photo: {times[1024] * 1e3:.0f} ms; 8000x8000 photo: "
          f"{times[8000] * 1e3:.0f} ms (ratio {times[8000] / times[1024]:.1f}x for 61x the pixels)")


def _write(tmp: Path, n: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    words = np.array([str(i) for i in range(256)], dtype=object)
    usage = ["Training"] * int(n * 0.8) + ["PublicTest"] * ((n - int(n * 0.8)) // 2)
    usage += ["PrivateTest"] * (n - len(usage))
    csv_path, plus_path = tmp / "fer2013.csv", tmp / "fer2013new.csv"
    with open(csv_path, "w") as f, open(plus_path, "w") as g:
        f.write("emotion,pixels,Usage\n")
        g.write("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n")
        for i in range(n):
            px = rng.integers(0, 256, 48 * 48)
            f.write(f"{i % 7},{' '.join(words[px])},{usage[i]}\n")
            votes = np.bincount(rng.choice(10, 10, p=[.3, .25, .1, .1, .08, .04, .04, .04, .03, .02]), minlength=10)
            g.write(f"{usage[i]},fer{i:07d}.png,{','.join(map(str, votes))}\n")
    return csv_path, plus_path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=35887)
    ap.add_argument("--target", type=float, default=60.0, help="seconds allowed for the plain import")
    ap.add_argument("--landmark-rows", type=int, default=4000, help="rows of the import with the 68-point fits")
    ap.add_argument("--photos", type=int, default=1000, help="photographs in the folder import")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["FERCORE_CACHE"] = str(tmp / "cache")
        t0 = time.perf_counter()
        csv_path, plus_path = _write(tmp, args.rows)
        t_write = time.perf_counter() - t0
        print(f"synthesised {args.rows} rows ({csv_path.stat().st_size / 1e6:.0f} MB) in {t_write:.1f} s")

        fast = PreprocessOptions(size=48, detect=False, align=False, normalize="standardize", geometry="box",
                                 landmarks=False)
        t0, c0 = time.perf_counter(), time.process_time()
        a = import_dataset("fer2013", csv_path, options=fast)
        t_plain, c_plain = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        b = import_dataset("fer2013", csv_path, ferplus=plus_path, options=fast)
        t_plus = time.perf_counter() - t0
        t0 = time.perf_counter()
        c = import_dataset("fer2013", csv_path, options=fast)
        t_hit = time.perf_counter() - t0
        assert c.cached and not a.cached and not b.cached
        print(f"FER2013 import without landmarks (parse + write FaceSet): {t_plain:.1f} s "
              f"({args.rows / t_plain:.0f} rows/s; {c_plain:.1f} s of CPU time); target < {args.target:.0f} s")
        print(f"FER+ import (plus votes and four target schemes):    {t_plus:.1f} s")
        print(f"cached re-import (hash source, read header):         {t_hit:.2f} s "
              f"({t_plain / t_hit:.0f}x faster than importing)")
        (tmp / "lm").mkdir()
        lm_csv, _ = _write(tmp / "lm", args.landmark_rows)
        t0, c0 = time.perf_counter(), time.process_time()
        import_dataset("fer2013", lm_csv)
        t_lm = time.perf_counter() - t0
        c_lm = time.process_time() - c0 + _children_cpu()
        print(f"FER2013 import with the 68-point fits (the default), {args.landmark_rows} rows: {t_lm:.1f} s wall, "
              f"{c_lm:.1f} s CPU in all processes: {1000 * c_lm / args.landmark_rows:.1f} ms of CPU per face; "
              f"{args.rows} rows would take about {c_lm / args.landmark_rows * args.rows / max(1, os.cpu_count() or 1):.0f} s "
              f"on {os.cpu_count()} cores")
        root = _photo_tree(tmp / "photos", args.photos)
        t0, c0 = time.perf_counter(), time.process_time()
        res = import_dataset("folder", root, subject_pattern=r"^(?P<subject>s\d+)_")
        t_folder = time.perf_counter() - t0
        c_folder = time.process_time() - c0 + _children_cpu()
        print(f"folder of {args.photos} photos (dlib detection + 68 points + canonical crop, default options): "
              f"{t_folder:.1f} s wall, {c_folder:.1f} s CPU; {1000 * t_folder / args.photos:.0f} ms per photo")
        print("  " + res.summary.splitlines()[0])
        print(f"cpu count: {os.cpu_count()}; timings share the CPU with other work, so treat them as upper bounds")
    _big_photo_timing()
    ok = t_plain < args.target
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
