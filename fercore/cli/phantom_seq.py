"""``python -m fercore phantom-seq``: generate phantom sequences (expressions or micro-expressions
in time, ground truth on every frame) as a FaceSet file, and optionally a montage."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "phantom-seq"
HELP = "generate phantom face sequences (neutral -> apex, or micro-expressions) with per-frame ground truth"
DESCRIPTION = (
    "Draw phantom sequences: per subject and expression, T frames from neutral through onset to apex "
    "(optionally back towards neutral), each AU on its own smooth curve; or, with --micro, neutral "
    "sequences of which half hold one brief low-intensity micro-expression. Every frame carries its "
    "label, AU intensities, landmarks and phase; folds are subject-independent. Writes a FaceSet "
    "HDF5 file (and a montage PNG, one row per sequence)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="FaceSet file to write (.h5)")
    p.add_argument("--subjects", type=int, default=80, help="number of subjects (default 80)")
    p.add_argument("--per-subject", type=int, default=8,
                   help="sequences per subject (default 8: every class once, or 4 micro + 4 neutral)")
    p.add_argument("--frames", type=int, default=16, help="frames per sequence (default 16)")
    p.add_argument("--size", type=int, default=48, help="image side in pixels, 48-128 (default 48)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--folds", type=int, default=10, help="subject-independent folds (default 10)")
    p.add_argument("--micro", action="store_true",
                   help="micro-expressions embedded in neutral sequences instead of full expressions")
    p.add_argument("--offset", action="store_true", help="expressions return towards neutral after the apex")
    p.add_argument("--micro-frames", type=int, nargs=2, default=(2, 5), metavar=("MIN", "MAX"),
                   help="micro-expression duration range in frames (default 2 5)")
    p.add_argument("--micro-intensity", type=float, nargs=2, default=(1.0, 2.0), metavar=("LOW", "HIGH"),
                   help="micro-expression peak intensity range (default 1 2)")
    p.add_argument("--au-variation", type=float, default=1.0,
                   help="0 = AUs fully determined by the emotion; 1 = natural variation (default)")
    p.add_argument("--nuisance", type=float, default=1.0, help="nuisance strength, 0 = none (default 1)")
    p.add_argument("--drift", type=float, default=1.0, help="how far the nuisance drifts within a sequence (default 1)")
    p.add_argument("--montage", type=Path, default=None, help="also write a montage PNG, one row per sequence")
    p.add_argument("--rows", type=int, default=8, help="sequences in the montage (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from fercore.cli._progress import tqdm_progress
    from fercore.cli.phantom import check_outputs, write_png
    from fercore.data.phantom.sequences import generate_sequences, sequence_montage
    from fercore.data.sequences import sequence_index
    from fercore.store.faceset_h5 import save_faceset

    check_outputs(args.out, args.montage)
    with tqdm_progress(disable=args.quiet) as progress:
        fs = generate_sequences(
            args.subjects, per_subject=args.per_subject, n_frames=args.frames, size=args.size, seed=args.seed,
            kind="micro" if args.micro else "expression", offset=args.offset, n_folds=args.folds,
            au_variation=args.au_variation, nuisance=args.nuisance, drift=args.drift,
            micro_frames=tuple(args.micro_frames), micro_intensity=tuple(args.micro_intensity), progress=progress,
        )
    digest = save_faceset(fs, args.out)
    index = sequence_index(fs.sequences, fs.frames)
    print(fs.summary())
    print(f"{len(index)} sequences of {args.frames} frames; {fs.meta['protocol']}")
    print(f"wrote {args.out} (content hash {digest[:12]})")
    if args.montage is not None:
        write_png(args.montage, sequence_montage(fs, max_rows=args.rows))
        print(f"wrote {args.montage}")
    return 0
