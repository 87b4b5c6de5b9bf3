"""``python -m fercore null``: build a run's null network and compare the run's analysis with it."""

from __future__ import annotations

import argparse

from fercore.store.layout import NULL_KINDS

NAME = "null"
HELP = "build a run's null network (same architecture, untrained or trained on shuffled labels) and analyse against it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, run name under the runs folder, or a unique prefix")
    parser.add_argument("--kind", choices=NULL_KINDS, default=NULL_KINDS[0],
                        help="untrained: random init with another seed (default); shuffled: one round trained on "
                             "permuted labels")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from fercore.analysis.analyze import analyze
    from fercore.cli._progress import tqdm_progress
    from fercore.store.layout import null_dir

    with tqdm_progress(disable=args.quiet) as progress:
        path = analyze(args.run, null=args.kind, progress=progress)
    print(null_dir(path.parent, args.kind))
    return 0
