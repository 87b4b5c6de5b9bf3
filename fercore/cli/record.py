"""``python -m fercore record``: record what every filter of a trained run responds to."""

from __future__ import annotations

import argparse

from fercore.recording.record import DEFAULT_K, MAX_K

NAME = "record"
HELP = "record each filter's top-K images, patches and per-image maxima into records.h5 (projections on demand)"
DESCRIPTION = (
    "Run a trained run's fold-0 weights (or an imported network) over the FaceSet it was trained on (or "
    "--data FILE) and write <run>/records.h5: per filter the top-K images (raw and one per sequence/subject) "
    "with receptive-field patches, and the N x F matrix of per-image maxima, at the speed of the forward pass. "
    "Projections (Zeiler-Fergus deconvnet for a network trained here, guided backpropagation for any other) are "
    "made when first asked for and cached beside the records (--projections all: every one now). Cached: "
    "nothing is redone when the file already matches."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", "--run", dest="run", required=True,
                        help="run directory, run name under cache/runs, or a unique prefix (--run-dir is the spelling "
                             "torchrun accepts: it rejects --run as an abbreviation of its own --run-path)")
    parser.add_argument("--data", default=None, metavar="FILE",
                        help="FaceSet .h5 to record on (default: the run's; required for an imported network)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"top images kept per filter (default {DEFAULT_K}, at most {MAX_K})")
    parser.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                        help="layers (dotted names such as features.conv3): conv layers of a run trained here, any "
                             "module that runs once per forward pass of an imported network; default every conv layer")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--projections", choices=("none", "all"), default="none",
                        help="none (default): each filter's projections are made the first time something asks for "
                             "them (the Filters view, python -m fercore project); all: every one now, after recording")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from fercore.cli._progress import tqdm_progress
    from fercore.recording.record import record

    with tqdm_progress(disable=args.quiet) as progress:
        path = record(args.run, data=args.data, k=args.k, layers=args.layers, batch_size=args.batch_size,
                      projections=args.projections, progress=progress)
    print(path)
    return 0
