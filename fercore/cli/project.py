"""``python -m fercore project``: compute (and cache) the projections of recorded filters now."""

from __future__ import annotations

import argparse

NAME = "project"
HELP = "compute the projections of recorded filters' top-K now (they are otherwise made when first viewed)"
DESCRIPTION = (
    "Projections (Zeiler-Fergus deconvnet for a network trained here, guided backpropagation for any other) "
    "are made the first time a view asks for a filter and cached beside records.h5. This command makes those "
    "of the chosen layers and filters (default: all) now, batched; filters already cached are skipped. "
    "record --projections all does the same right after recording."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, run name under cache/runs, or a unique prefix")
    parser.add_argument("--layers", nargs="+", default=None, metavar="LAYER", help="recorded layers (default all)")
    parser.add_argument("--filters", nargs="+", type=int, default=None, metavar="F",
                        help="filter indices in each layer (default all)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from fercore.cli._progress import tqdm_progress
    from fercore.recording.project import ensure_projections
    from fercore.store.reader import open_run

    reader = open_run(args.run)
    counted = {}

    def count(done, total, stage):
        counted["total"] = total

    with tqdm_progress(disable=args.quiet) as progress:
        def both(done, total, stage):
            count(done, total, stage)
            progress(done, total, stage)

        folder = ensure_projections(reader, layers=args.layers, filters=args.filters, progress=both)
    print(f"{counted.get('total', 0)} filters projected ({reader.projection((args.layers or reader.layers)[0])}); "
          f"cached in {folder}")
    return 0
