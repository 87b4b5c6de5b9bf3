"""``python -m fercore phantom``: generate the phantom data set (and optionally a montage)."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from fercore.cli._progress import tqdm_progress
from fercore.util import atomic_path

NAME = "phantom"
HELP = "generate the phantom face data set (known emotions and AUs) as a FaceSet .h5 file"
DESCRIPTION = (
    "Draw grey phantom faces with a per-subject identity, FACS action units where FACS places "
    "them and the eight CK+ expressions sampled around the EMFACS prototypes; write them as a "
    "FaceSet HDF5 file (and a montage PNG, one row per emotion)."
)


#: The image sides the phantom faces are drawn for (``--size``).
SIZE_RANGE = (48, 128)


def image_side(text: str) -> int:
    """``--size``: an integer number of pixels within :data:`SIZE_RANGE` (argparse names the
    argument in front of the message)."""
    lo, hi = SIZE_RANGE
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an image side in pixels, {lo}-{hi}; got {text!r}") from None
    if not lo <= size <= hi:
        raise argparse.ArgumentTypeError(
            f"expected an image side of {lo}-{hi} pixels (the range the phantom faces are drawn for), got {size}; "
            f"train at another input size with `python -m fercore train --size` instead")
    return size


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    p.add_argument("--size", type=image_side, default=64, help="image side in pixels, 48-128 (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--subjects", type=int, default=None, help="number of subjects (default n/16)")
    p.add_argument("--folds", type=int, default=10, help="subject-independent folds (default 10)")
    p.add_argument("--au-variation", type=float, default=1.0,
                   help="0 = AUs fully determined by the emotion; 1 = natural variation (default)")
    p.add_argument("--p-drop", type=float, default=0.15,
                   help="probability that a non-core prototype AU is dropped (default 0.15)")
    p.add_argument("--p-extra", type=float, default=0.3,
                   help="probability of each of up to two extra AUs (default 0.3)")
    p.add_argument("--extra-max", type=int, default=3,
                   help="highest intensity of an extra AU, 1-5 (default 3; 5 lets extras match the prototypes)")
    p.add_argument("--nuisance", type=float, default=1.0, help="nuisance strength, 0 = none (default 1)")
    p.add_argument("--out", required=True, type=Path, help="FaceSet file to write (.h5)")
    p.add_argument("--montage", type=Path, default=None, help="also write a montage PNG, one row per emotion")
    p.add_argument("--per-class", type=int, default=8, help="faces per montage row (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def check_outputs(out: Path, montage: Path | None) -> None:
    """``--out`` must name a .h5 FaceSet file and ``--montage`` (when given) a .png."""
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise ValueError(f"--out {out}: expected a .h5 file name (a FaceSet HDF5 file)")
    if montage is not None and montage.suffix.lower() != ".png":
        raise ValueError(f"--montage {montage}: expected a .png file name")


def run(args: argparse.Namespace) -> int:
    from fercore.data.phantom import generate_faceset, montage
    from fercore.store.faceset_h5 import save_faceset

    check_outputs(args.out, args.montage)
    with tqdm_progress(disable=args.quiet) as progress:
        fs = generate_faceset(
            args.n, size=args.size, seed=args.seed, n_subjects=args.subjects, n_folds=args.folds,
            au_variation=args.au_variation, p_drop=args.p_drop, p_extra=args.p_extra, extra_max=args.extra_max,
            nuisance=args.nuisance, progress=progress,
        )
    digest = save_faceset(fs, args.out)
    print(fs.summary())
    print(f"wrote {args.out} (content hash {digest[:12]})")
    if args.montage is not None:
        write_png(args.montage, montage(fs, per_class=args.per_class))
        print(f"wrote {args.montage}")
    return 0


def write_png(path: Path, image) -> None:
    """Write a grey uint8 image as PNG, atomically."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"{path}: could not encode the image as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
