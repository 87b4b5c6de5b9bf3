"""``python -m fercore runs``: list the runs in the cache."""

from __future__ import annotations

import argparse

NAME = "runs"
HELP = "list the trained runs in the cache: data set, model, accuracy, recorded, analysed, null"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None, help="runs folder (default: the cache's runs/)")


def run(args: argparse.Namespace) -> int:
    from fercore.store.layout import list_runs, runs_dir
    from fercore.store.reader import open_run

    runs = list_runs(args.root)
    if not runs:
        print(f"no runs in {args.root or runs_dir()}; build the default with `python -m fercore default` "
              "or train one with `python -m fercore train`, or import your own network with `python -m fercore "
              "import-model`")
        return 0
    for r in runs:
        if r.imported:
            acc = "not evaluated" if r.mean_acc is None else f"{100 * r.mean_acc:.1f}% (latest evaluate)"
        else:
            acc = "training" if r.mean_acc is None else f"{100 * r.mean_acc:.1f} ± {100 * (r.sd_acc or 0):.1f}%"
        state = "not recorded"
        if r.recorded:
            reader = open_run(r.dir)
            state = "recorded" if not reader.has_stats else (
                f"analysed (null {reader.analysis_info().get('null') or 'none'})")
        print(f"{r.name}  {r.dataset}  {r.arch}  {acc}  {state}")
    return 0
