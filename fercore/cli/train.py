"""``python -m fercore train``: k-fold training of a model on a FaceSet file (cached runs)."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train a model on a FaceSet file under its protocol (k folds or fixed splits); cached and resumable"
DESCRIPTION = (
    "Train a facial-expression CNN on a FaceSet file. Round t tests fold t, validates on fold (t+1) mod k "
    "and trains on the rest (or uses the file's predefined splits); the best-validation epoch is scored on "
    "test. The run is cached under cache/runs/<name>-<hash8>/: the same data and settings return at once, "
    "an interrupted run resumes. Without --preset, the zero-bias-sgd preset applies (Khorrami et al.'s network "
    "and SGD settings at the data's image size, 10 epochs)."
)


def _folds(text: str) -> list[int]:
    """``K`` -> rounds 0..K-1; ``a,b,c`` -> those rounds."""
    try:
        if "," in text:
            return [int(t) for t in text.split(",") if t.strip()]
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--folds: expected a count K (rounds 0..K-1) or a comma list such as 0,3; got {text!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"--folds: expected a positive count, got {k}")
    return list(range(k))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fercore.training.loop import INITS, SCHEDULES
    from fercore.training.losses import SCHEMES
    from fercore.training.models import ARCHS
    from fercore.training.presets import DEFAULT_TRAIN_PRESET, PRESETS

    parser.add_argument("--data", required=True, metavar="FILE", help="FaceSet .h5 file (python -m fercore phantom / import)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_TRAIN_PRESET,
                        help=f"start from a named setup; other options override it (default {DEFAULT_TRAIN_PRESET})")
    parser.add_argument("--model", choices=sorted(ARCHS), help="architecture (default zero_bias)")
    parser.add_argument("--folds", type=_folds, metavar="K|LIST",
                        help="rounds to run: a count K (rounds 0..K-1) or a comma list (e.g. 0,3); default all")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="base learning rate")
    parser.add_argument("--schedule", choices=SCHEDULES)
    parser.add_argument("--width", type=float, help="channel multiplier (1.0 = the paper's network)")
    parser.add_argument("--size", type=int, help="model input side in px (default: the FaceSet's image size)")
    parser.add_argument("--scheme", choices=SCHEMES, help="label scheme (FER+: majority, multilabel, probability, crossentropy)")
    parser.add_argument("--seed", type=int, help="seed of shuffling, augmentation and dropout")
    parser.add_argument("--init-seed", type=int, help="seed of the weight initialisation")
    parser.add_argument("--init", choices=INITS,
                        help="paper: the architecture's initialisation; lsuv: rescaled to unit variance per layer "
                             "on training images (short runs learn from the first epoch)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="Khorrami's augmentation (flip, rotation, scale, translation, intensity)")
    parser.add_argument("--dropout", action=argparse.BooleanOptionalAction, default=None, help="dropout on the FC layers")
    parser.add_argument("--au-weight", type=float, metavar="W",
                        help="multi-task: add W x the AU-presence cross-entropy of an AU head (needs AU codes; "
                             "0 = emotion only, as the papers trained)")
    parser.add_argument("--au-input", choices=("hidden", "features"),
                        help="what the AU head reads: the last hidden FC layer (default) or the pooled conv features")
    parser.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from fercore.cli._progress import tqdm_progress
    from fercore.training.presets import resolve, train_preset

    overrides = {
        "arch": args.model, "folds": args.folds, "epochs": args.epochs, "batch_size": args.batch_size,
        "lr": args.lr, "schedule": args.schedule, "width": args.width, "in_size": args.size,
        "scheme": args.scheme, "seed": args.seed, "init_seed": args.init_seed, "augment": args.augment,
        "dropout": args.dropout, "init": args.init, "au_weight": args.au_weight, "au_input": args.au_input,
    }
    name = args.preset
    spec, config = resolve(name, args.data, **overrides)
    print(f"model {spec.arch} width {spec.width} input {spec.in_size}px, {spec.n_classes} classes; "
          f"{config.epochs} epochs, batch {config.batch_size}, lr {config.lr} ({config.schedule}), "
          f"scheme {config.scheme}{f' + AU presence x {config.au_weight:g}' if config.au_weight else ''}, augmentation {'on' if config.augment else 'off'}, init {config.init}")
    t0 = time.perf_counter()
    with tqdm_progress(disable=args.quiet) as progress:
        run_dir = train_preset(args.data, name, progress=progress, device=args.device, **overrides)
    wall = time.perf_counter() - t0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(run_dir)
    for f in metrics["folds"]:
        print(f"  round {f['fold']}: test {100 * f['test_acc']:.2f}% (best validation {100 * f['best_val_acc']:.2f}% "
              f"at epoch {f['best_epoch']}; {f['n_train']}/{f['n_valid']}/{f['n_test']} images)")
    print(metrics["summary"])
    if metrics.get("mean_au_test_auc"):
        aucs = {a: v for a, v in metrics["mean_au_test_auc"].items() if v is not None}
        print("AU head, mean test ROC AUC: " + ", ".join(f"{a} {v:.3f}" for a, v in aucs.items()))
    cached = " (cached run)" if wall < 0.5 * metrics["wall_s"] else ""
    print(f"training time {metrics['wall_s']:.1f} s wall, {metrics['cpu_s']:.1f} s CPU on {metrics['device']}{cached}")
    return 0
