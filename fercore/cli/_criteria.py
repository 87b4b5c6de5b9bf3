"""The funnel's thresholds as command-line options, with the library's defaults."""

from __future__ import annotations

import argparse
import dataclasses

from fercore.analysis.criteria import Criteria

_HELP = {
    "min_share": "share of the top-K that must carry the AU (raw, distinct)",
    "max_base_rate": "the AU's base rate must be below this (raw)",
    "alpha": "Benjamini-Hochberg false discovery rate of the within-emotion test",
    "min_auc": "the within-emotion AUC the test must show to be exceeded (the null: AUC <= this)",
    "min_minority": "units within the emotions that must show the AU and its absence for it to be testable",
    "min_spatial": "share of the distinct list's maxima inside the AU's face region",
}


def add_criteria_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`Criteria` (``--min-share`` ...), defaulting to its default."""
    g = parser.add_argument_group("criteria of the funnel (docs/honest_fau.md)")
    for f in dataclasses.fields(Criteria):
        g.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                       help=f"{_HELP[f.name]} (default {f.default})")


def criteria_from_args(args: argparse.Namespace) -> Criteria:
    return Criteria(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Criteria)})
