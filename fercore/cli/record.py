"""``python -m fercore record``: record what every filter of a trained run responds to."""

from __future__ import annotations

import argparse

from fercore.recording.record import DEFAULT_K, MAX_K

NAME = "record"
HELP = "record each filter's top-K images, deconvnet projections and per-image maxima into records.h5"
DESCRIPTION = (
    "Run a trained run's fold-0 weights over the FaceSet it was trained on (or --data FILE) and "
    "write <run>/records.h5: per filter the top-K images (raw and one per sequence/subject) with "
    "receptive-field patches and Zeiler-Fergus deconvnet projections, and the N x F matrix of "
    "per-image maxima. Cached: nothing is redone when the file already matches."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, run name under cache/runs, or a unique prefix")
    parser.add_argument("--data", default=None, metavar="FILE", help="FaceSet .h5 to record on (default: the run's)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"top images kept per filter (default {DEFAULT_K}, at most {MAX_K})")
    parser.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                        help="conv layers (dotted names such as features.conv3); default all")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from fercore.cli._progress import tqdm_progress
    from fercore.recording.record import record

    with tqdm_progress(disable=args.quiet) as progress:
        path = record(args.run, data=args.data, k=args.k, layers=args.layers, batch_size=args.batch_size,
                      progress=progress)
    print(path)
    return 0
