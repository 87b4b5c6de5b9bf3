"""``python -m fercore import {ckplus,fer2013,tfd,folder} SOURCE``: a real data set -> FaceSet file."""

from __future__ import annotations

import argparse

from fercore.cli._progress import tqdm_progress
from fercore.data.datasets import default_options, import_dataset
from fercore.data.preprocess import ON_NO_FACE, PreprocessOptions
from fercore.training.inputs import METHODS

NAME = "import"
HELP = "import CK+, FER2013/FER+, TFD or a class-per-folder tree into a FaceSet file"
DESCRIPTION = (
    "Read a data set in its official layout, detect, align and crop the faces, and write a FaceSet "
    "file (default: under the cache's datasets/ folder, named by a hash of the sources and options; "
    "an identical second import is a cache hit). See docs/datasets.md."
)


def _bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes/no, got {s!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=("ckplus", "fer2013", "tfd", "folder"), help="data set format")
    parser.add_argument("source", help="CK+ root / fer2013.csv / TFD .mat / class-folder root")
    parser.add_argument("--out", help="FaceSet file to write (default: cache datasets/<kind>-<hash>.h5)")
    parser.add_argument("--force", action="store_true", help="re-import even if cached")
    g = parser.add_argument_group("preprocessing (defaults depend on the data set)")
    g.add_argument("--size", type=int, help="output face side in pixels")
    g.add_argument("--detect", type=_bool, help="detect the face with the Haar cascade (yes/no)")
    g.add_argument("--align", type=_bool, help="level the eyes (yes/no)")
    g.add_argument("--face-margin", type=float, help="extra border per side, fraction of the face box")
    g.add_argument("--on-no-face", choices=ON_NO_FACE, help="skip face-less images or centre-crop them")
    g.add_argument("--normalize", choices=METHODS, help="pixel normalisation applied at train time")
    g.add_argument("--max-pixels", type=int, help="refuse larger images")
    d = parser.add_argument_group("data-set options")
    d.add_argument("--classes", type=int, choices=(8, 6), default=8, help="CK+: 8 or 6 classes")
    d.add_argument("--ferplus", help="FER2013: fer2013new.csv, to import FER+ labels and targets")
    d.add_argument("--include-unlabelled", action="store_true", help="TFD: keep unlabelled images")
    d.add_argument("--class-order", help="folder: comma-separated class folder names in index order")
    d.add_argument("--subject-pattern", help="folder: regex taking the subject id from the file name")
    d.add_argument("--au-csv", help="folder: CSV of AU labels keyed by file name")
    d.add_argument("--folds", type=int, default=10, help="number of folds (CK+, FER2013, folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace) -> PreprocessOptions:
    """The kind's default options with the given flags applied."""
    base = default_options(args.kind).to_dict()
    for k in ("size", "detect", "align", "face_margin", "on_no_face", "normalize", "max_pixels"):
        v = getattr(args, k, None)
        if v is not None:
            base[k] = v
    return PreprocessOptions(**base)


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    loader = {}
    if args.kind == "ckplus":
        loader = {"classes": args.classes, "n_folds": args.folds}
    elif args.kind == "fer2013":
        loader = {"ferplus": args.ferplus, "n_folds": args.folds}
    elif args.kind == "tfd":
        loader = {"include_unlabelled": args.include_unlabelled}
    else:
        order = tuple(c.strip() for c in args.class_order.split(",")) if args.class_order else None
        loader = {"classes": order, "subject_pattern": args.subject_pattern, "au_csv": args.au_csv,
                  "n_folds": args.folds}
    with tqdm_progress(disable=args.quiet) as progress:
        res = import_dataset(args.kind, args.source, options=options, out=args.out, force=args.force,
                             progress=progress, **loader)
    print(("cache hit: " if res.cached else "wrote ") + str(res.path))
    print(res.summary)
    return 0
