"""``python -m fercore null``: build a run's null network (untrained or shuffled-label), recorded and analysed."""

from __future__ import annotations

import argparse

NAME = "null"
HELP = "build a run's null network (same architecture, untrained or trained on shuffled labels), recorded on the same data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, run name under the runs folder, or a unique prefix")
    parser.add_argument("--kind", choices=("untrained", "shuffled"), default="untrained",
                        help="untrained: random init with another seed (default); shuffled: one round trained on permuted labels")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from fercore.analysis.nulls import ensure_null
    from fercore.cli._progress import tqdm_progress

    with tqdm_progress(disable=args.quiet) as progress:
        path = ensure_null(args.run, kind=args.kind, progress=progress)
    print(path)
    return 0
