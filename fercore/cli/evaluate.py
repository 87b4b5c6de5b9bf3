"""``python -m fercore evaluate``: score a trained run on a FaceSet (cross-data-set transfer)."""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = "score a trained run on a FaceSet file, mapping label sets through canonical emotion names"
DESCRIPTION = (
    "Score a trained run on another data set (train on one, test on another, as Breuer & Kimmel 2017 did). "
    "Classes are matched by canonical emotion name; data classes with no counterpart are reported and their "
    "images excluded, run classes with no counterpart are never predicted. Writes eval-<datahash8>.json into "
    "the run directory."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, run name, or a unique prefix of one")
    parser.add_argument("--data", required=True, metavar="FILE", help="FaceSet .h5 file to score on")
    parser.add_argument("--fold", type=int, help="use one round's model (default: every trained round's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _table(conf, names) -> str:
    w = max(6, *(len(n) for n in names)) + 1
    lines = ["true \\ pred".ljust(w) + "".join(n[:w - 1].rjust(w) for n in names)]
    for name, row in zip(names, conf, strict=True):
        lines.append(name.ljust(w) + "".join(str(v).rjust(w) for v in row))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from fercore.cli._progress import tqdm_progress
    from fercore.store.layout import resolve_run
    from fercore.training.evaluate import evaluate_run

    run_dir = resolve_run(args.run)
    with tqdm_progress(disable=args.quiet) as progress:
        result = evaluate_run(run_dir, args.data, fold=args.fold, progress=progress)
    print(f"run {result['run']} on {result['data']['path']} ({result['images']}, {result['n_images']} images)")
    for w in result["warnings"]:
        print(f"WARNING: {w}")
    print("mapping (data class -> run class, canonical):")
    for m in result["mapping"]:
        print(f"  {m['data_class']} -> {m['run_class']} ({m['canonical']})")
    if result["excluded_data_classes"]:
        print("excluded data classes (no counterpart in the run): "
              + ", ".join(f"{c} ({n} images)" for c, n in result["excluded_data_classes"].items()))
    if result["run_classes_not_predicted"]:
        print("run classes never predicted (no counterpart in the data): " + ", ".join(result["run_classes_not_predicted"]))
    print(f"protocol: {result['protocol']}")
    for f in result["per_fold"]:
        acc = "n/a" if f["accuracy"] is None else f"{100 * f['accuracy']:.2f}%"
        print(f"  {'network' if f['fold'] < 0 else 'round ' + str(f['fold'])}: {acc} on {f['n']} images")
    if result["accuracy"] is not None:
        print(f"accuracy {100 * result['accuracy']:.2f} ± {100 * result['sd']:.2f}% over {len(result['per_fold'])} model(s)")
    print("confusion (summed over models):")
    print(_table(result["confusion"], result["data"]["class_names"]))
    print(result["path"])
    return 0
