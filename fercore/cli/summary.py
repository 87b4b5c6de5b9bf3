"""``python -m fercore summary``: how many filters are AU-selective under each control, next to a null network."""

from __future__ import annotations

import argparse

NAME = "summary"
HELP = "count AU-selective filters per layer: raw, distinct top-K, beyond emotion, beyond a null network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, run name under the runs folder, or a unique prefix")
    parser.add_argument("--null", choices=("untrained", "shuffled", "none"), default="untrained",
                        help="null network to compare with (built when missing; default untrained)")
    parser.add_argument("--min-share", type=float, default=0.8, help="share of the top-K that must show the AU (default 0.8)")
    parser.add_argument("--max-base-rate", type=float, default=0.4, help="the AU's base rate must be below this (default 0.4)")
    parser.add_argument("--min-excess", type=float, default=0.5,
                        help="excess of the top-K's AU share over what its emotions predict (default 0.5, relative)")
    parser.add_argument("--excess", choices=("relative", "absolute"), default="relative",
                        help="relative: (observed - expected) / (1 - expected) (default); absolute: observed - expected")
    parser.add_argument("--alpha", type=float, default=0.05, help="Benjamini-Hochberg false discovery rate (default 0.05)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from fercore.analysis.criteria import Criteria
    from fercore.analysis.summary import format_summary, summarize
    from fercore.cli._progress import tqdm_progress

    crit = Criteria(min_share=args.min_share, max_base_rate=args.max_base_rate, min_excess=args.min_excess,
                    alpha=args.alpha, excess=args.excess)
    with tqdm_progress(disable=args.quiet) as progress:
        s = summarize(args.run, null=None if args.null == "none" else args.null, criteria=crit, progress=progress)
    print(format_summary(s))
    return 0
