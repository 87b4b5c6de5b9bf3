"""``python -m fercore analyze``: relate a run's recorded filters to FACS action units."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "analyze"
HELP = "filter x AU statistics (top-K share, KL, correlations, BH q-values, spatial) into records.h5"
DESCRIPTION = (
    "Compute, per recorded layer, each filter's AU histogram against the data's base rates (KL), "
    "the point-biserial correlation of its per-image maxima with each AU (exact p-values, "
    "Benjamini-Hochberg), the correlation within emotion classes, and the share of its top-K "
    "positions in each AU's face region; store them in records.h5 and optionally write the "
    "ranked filter-AU table as CSV. Then print the run's summary: how many filters are "
    "AU-selective raw, with a distinct top-K, beyond emotion and beyond the null network "
    "(built, recorded and analysed on the same data when missing)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, run name under cache/runs, or a unique prefix")
    parser.add_argument("--csv", default=None, metavar="FILE", help="write the ranked filter-AU table here")
    parser.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                        help="layers for the CSV table (default all recorded layers)")
    parser.add_argument("--null", choices=("untrained", "shuffled", "none"), default="untrained",
                        help="null network the summary compares with (default untrained; built when missing, "
                             "which costs one more recording pass; none: no null column)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from fercore.analysis.estimators import analyze
    from fercore.cli._progress import tqdm_progress
    from fercore.store.reader import open_run, rows_to_csv
    from fercore.util import atomic_path

    with tqdm_progress(disable=args.quiet) as progress:
        path = analyze(args.run, progress=progress)
    print(path)
    if args.csv:
        reader = open_run(path.parent)
        layers = args.layers or reader.layers
        rows = [row for layer in layers for row in reader.match_table(layer)]
        with atomic_path(Path(args.csv)) as tmp:
            tmp.write_text(rows_to_csv(rows))
        print(f"{len(rows)} filter-AU rows -> {args.csv}")
    from fercore.analysis.summary import format_summary, summarize

    null = None if args.null == "none" or path.parent.parent.name == "null" else args.null
    with tqdm_progress(disable=args.quiet) as progress:
        summary = summarize(path.parent, null=null, progress=progress)
    print()
    print(format_summary(summary))
    return 0
