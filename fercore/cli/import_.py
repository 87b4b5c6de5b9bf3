"""``python -m fercore import KIND SOURCE``: a real data set -> FaceSet file."""

from __future__ import annotations

import argparse

from fercore.data.datasets import DATASETS, default_options
from fercore.data.preprocess import (
    DETECTORS,
    GEOMETRIES,
    NORMALIZE_METHODS,
    ON_NO_FACE,
    PreprocessOptions,
)
from fercore.pipeline import import_dataset

from ._progress import tqdm_progress

NAME = "import"
HELP = "import CK+, FER2013/FER+, TFD or a class-per-folder tree into a FaceSet file"
DESCRIPTION = (
    "Read a data set in its official layout, find each face, fit its 68 landmarks, crop it to the "
    "canonical face geometry (or keep pre-cropped faces as they are), and write a FaceSet file "
    "(default: under the cache's datasets/ folder, named by a hash of the sources and options; an "
    "identical second import is a cache hit). See docs/datasets.md."
)

#: The preprocessing options a command line can set, and their flags.
_PREPROCESS_FLAGS = ("size", "detect", "align", "face_margin", "on_no_face", "normalize", "max_pixels", "detector",
                     "geometry", "landmarks")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=tuple(DATASETS), help="data set format: "
                        + "; ".join(f"{k}: {v.source}" for k, v in DATASETS.items()))
    parser.add_argument("source", help="the data set's root folder or file (see KIND)")
    parser.add_argument("--out", help="FaceSet file to write (default: cache datasets/<kind>-<hash>.h5)")
    parser.add_argument("--force", action="store_true", help="re-import even if cached")
    g = parser.add_argument_group("preprocessing (defaults depend on the data set)")
    g.add_argument("--size", type=int, help="output face side in pixels")
    g.add_argument("--precropped", action="store_true",
                   help="the images are already cropped faces (CK+48-style folders): no detection, kept as they "
                        "are at their own size unless --size, landmarks fitted on each")
    g.add_argument("--detect", action=argparse.BooleanOptionalAction, default=None, help="find the face in each image")
    g.add_argument("--detector", choices=DETECTORS, help="dlib (HOG, Haar as the fallback) or haar (the papers')")
    g.add_argument("--geometry", choices=GEOMETRIES,
                   help="canonical: eyes and mouth at one template for every data set; box: the face box, eyes levelled")
    g.add_argument("--align", action=argparse.BooleanOptionalAction, default=None, help="align the face (see --geometry)")
    g.add_argument("--landmarks", action=argparse.BooleanOptionalAction, default=None,
                   help="fit and keep the 68 iBUG points (dlib)")
    g.add_argument("--face-margin", type=float, help="box crop: extra border per side, fraction of the face box")
    g.add_argument("--on-no-face", choices=ON_NO_FACE, help="skip face-less images or centre-crop them")
    g.add_argument("--normalize", choices=NORMALIZE_METHODS, help="pixel normalisation applied at train time")
    g.add_argument("--max-pixels", type=int, help="refuse larger images")
    d = parser.add_argument_group("data-set options")
    d.add_argument("--classes", type=int, choices=(8, 6), default=8, help="CK+: 8 or 6 classes")
    d.add_argument("--frames", choices=("khorrami", "all"), default="khorrami",
                   help="CK+: khorrami (first frame neutral + last 3, default) or all (every frame of a sequence)")
    d.add_argument("--ferplus", help="FER2013: fer2013new.csv, to import FER+ labels and targets")
    d.add_argument("--include-unlabelled", action="store_true", help="TFD: keep unlabelled images")
    d.add_argument("--class-order", help="folder: comma-separated class folder names in index order")
    d.add_argument("--subject-pattern",
                   help="folder: regex on the file name with a group 'subject' (and optionally 'sequence', 'frame')")
    d.add_argument("--au-csv", help="folder: CSV of AU labels keyed by file name")
    d.add_argument("--folds", type=int, default=10, help="number of folds (CK+, FER2013, folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace) -> PreprocessOptions:
    """The kind's default options with the given flags applied (``--precropped`` first)."""
    base = default_options(args.kind).to_dict()
    if getattr(args, "precropped", False):
        base.update(detect=False, align=False, geometry="box", landmarks=True)
    for k in _PREPROCESS_FLAGS:
        v = getattr(args, k, None)
        if v is not None:
            base[k] = v
    return PreprocessOptions(**base)


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    loader = {}
    if args.kind == "ckplus":
        loader = {"classes": args.classes, "n_folds": args.folds}
        if args.frames != "khorrami":
            loader["frames"] = args.frames
    elif args.kind == "fer2013":
        loader = {"ferplus": args.ferplus, "n_folds": args.folds}
    elif args.kind == "tfd":
        loader = {"include_unlabelled": args.include_unlabelled}
    else:
        order = tuple(c.strip() for c in args.class_order.split(",")) if args.class_order else None
        loader = {"classes": order, "subject_pattern": args.subject_pattern, "au_csv": args.au_csv,
                  "n_folds": args.folds}
        if args.precropped and args.size is None:
            loader["keep_size"] = True
    with tqdm_progress(disable=args.quiet) as progress:
        res = import_dataset(args.kind, args.source, options=options, out=args.out, force=args.force,
                             progress=progress, **loader)
    print(("cache hit: " if res.cached else "wrote ") + str(res.path))
    print(res.summary)
    return 0
