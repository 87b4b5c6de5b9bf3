"""``python -m fercore runs``: list the runs in the cache."""

from __future__ import annotations

import argparse

NAME = "runs"
HELP = "list the trained runs in the cache: data set, model, accuracy, recorded, analysed, null, date"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None, help="runs folder (default: the cache's runs/)")


def run(args: argparse.Namespace) -> int:
    from fercore.store.layout import list_runs, runs_dir

    runs = list_runs(args.root)
    if not runs:
        print(f"no runs in {args.root or runs_dir()}; build the default with `python -m fercore default` "
              "or train one with `python -m fercore train`, or import your own network with `python -m fercore "
              "import-model`")
        return 0
    for r in runs:
        print(describe(r))
    return 0


def describe(r) -> str:
    """One line of the listing for a :class:`fercore.store.layout.RunInfo`: what the run is, its
    accuracy, its records and its date; what to do where something is missing or damaged."""
    train_again = f"`python -m fercore train --data {r.faceset_path}` with the same options"
    if r.state == "failed":
        return (f"{r.name}  {r.dataset}  {r.arch}  failed: no weights and not being trained; delete {r.dir} "
                f"or train again ({train_again})")
    if r.state == "interrupted":
        return (f"{r.name}  {r.dataset}  {r.arch}  interrupted (not being trained); train again to resume "
                f"({train_again}) or delete {r.dir}")
    if r.imported:
        acc = "not evaluated" if r.mean_acc is None else f"{100 * r.mean_acc:.1f}% (latest evaluate)"
    else:
        acc = "training" if r.mean_acc is None else f"{100 * r.mean_acc:.1f} ± {100 * (r.sd_acc or 0):.1f}%"
    line = f"{r.name}  {r.dataset}  {r.arch}  {acc}  {_records(r)}"
    if r.date is not None:
        line += f"  {r.date:%Y-%m-%d %H:%M}" + (" (file time)" if r.date_from_files else "")
    return line


def _records(r) -> str:
    if r.records == "damaged":
        return (f"records damaged ({r.records_error}); record again: `python -m fercore record --run {r.name}`")
    if r.records != "ok":
        return "not recorded"
    from fercore.store.reader import open_run

    try:
        reader = open_run(r.dir)
        if not reader.has_stats:
            return "recorded"
        return f"analysed (null {reader.analysis_info().get('null') or 'none'})"
    except (OSError, ValueError) as e:
        return f"records damaged ({e}); record again: `python -m fercore record --run {r.name}`"
