"""``python -m fercore analyze``: relate a run's recorded filters to FACS action units."""

from __future__ import annotations

import argparse
from pathlib import Path

from fercore.cli._criteria import add_criteria_arguments, criteria_from_args
from fercore.store.layout import NULL_KINDS

NAME = "analyze"
HELP = "filter x AU statistics, the funnel of controls and the null comparison, into records.h5"
DESCRIPTION = (
    "Compute, per recorded layer and once, every figure of the filter-AU analysis (top-K AU shares, "
    "the within-emotion test over the units that carry the AU codes, Benjamini-Hochberg q-values, "
    "correlations, KL selectivity, the share of maxima in each AU's face region), the funnel of "
    "controls (raw, distinct top-K, beyond emotion, in the AU's region), and the same for a null "
    "network (built, recorded and analysed on the same data when missing); store them in records.h5; "
    "optionally write the ranked filter-AU table as CSV; print the run's summary."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, run name under cache/runs, or a unique prefix")
    parser.add_argument("--csv", default=None, metavar="FILE",
                        help="write the ranked filter-AU table (all layers, by the controlled evidence) here")
    parser.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                        help="layers for the CSV table (default all recorded layers)")
    parser.add_argument("--null", choices=("auto", *NULL_KINDS, "none"), default="auto",
                        help="null network to compare with (default auto: untrained for a network trained here, "
                             "permuted for an imported one; built when missing, which costs one more recording "
                             "pass; none: no null column)")
    add_criteria_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from fercore.analysis.analyze import analyze
    from fercore.analysis.summary import evidence_csv, evidence_rows, format_summary
    from fercore.cli._progress import tqdm_progress
    from fercore.store.reader import open_run
    from fercore.util import atomic_path

    with tqdm_progress(disable=args.quiet) as progress:
        path = analyze(args.run, null=None if args.null == "none" else args.null, criteria=criteria_from_args(args),
                       progress=progress)
    print(path)
    reader = open_run(path.parent)
    if args.csv:
        rows = evidence_rows(reader, args.layers)
        with atomic_path(Path(args.csv)) as tmp:
            tmp.write_text(evidence_csv(rows))
        print(f"{len(rows)} filter-AU rows -> {args.csv}")
    print()
    print(format_summary(reader.summary()))
    return 0
