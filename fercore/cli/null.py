"""``python -m fercore null``: build a run's null network and compare the run's analysis with it."""

from __future__ import annotations

import argparse

from fercore.store.layout import NULL_KINDS

NAME = "null"
HELP = ("build a run's null network (same architecture: untrained, trained on shuffled labels, or its weights "
        "permuted) and analyse against it")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, run name under the runs folder, or a unique prefix")
    parser.add_argument("--kind", choices=("auto", *NULL_KINDS), default="auto",
                        help="untrained: random init with another seed (the default for a network trained here); "
                             "shuffled: one round trained on permuted labels; permuted: the run's weights permuted "
                             "within each tensor, batch norm re-estimated (the default, and only null, of an "
                             "imported network)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from fercore.analysis.analyze import analyze
    from fercore.analysis.nulls import default_null
    from fercore.cli._progress import tqdm_progress
    from fercore.store.layout import null_dir, resolve_run

    kind = default_null(resolve_run(args.run)) if args.kind == "auto" else args.kind
    with tqdm_progress(disable=args.quiet) as progress:
        path = analyze(args.run, null=kind, progress=progress)
    print(null_dir(path.parent, kind))
    return 0
