"""``python -m fercore summary``: the funnel of controls per layer, for the run and its null network."""

from __future__ import annotations

import argparse

NAME = "summary"
HELP = "print the stored funnel per layer (raw, distinct, beyond emotion, in the AU region), run and null"
DESCRIPTION = (
    "Print what `analyze` stored: per layer how many filters are AU-selective at each stage of the "
    "funnel, with the AUs involved and the expected false discoveries, beside the null network's counts; "
    "--json prints the same as JSON for scripts. Nothing is computed: run `analyze` first (it also "
    "takes other criteria and another null)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, run name under the runs folder, or a unique prefix")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from fercore.analysis.summary import format_summary, summary_dict

    s = summary_dict(args.run)
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0
