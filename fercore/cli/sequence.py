"""``python -m fercore sequence``: an LSTM over a frozen CNN's per-frame features of a sequence
FaceSet (expression per sequence, or micro-expression detection), cached beside the CNN run."""

from __future__ import annotations

import argparse

NAME = "sequence"
HELP = "train an LSTM on a trained CNN's per-frame features of a sequence FaceSet (k folds over whole sequences)"
DESCRIPTION = (
    "Run a trained CNN (frozen) over every frame of a sequence FaceSet (phantom-seq, CK+ imported with "
    "all frames, a folder import with a sequence group) and train an LSTM on the per-frame features under "
    "the same subject-independent folds: round t tests fold t, validates on (t+1) mod k, trains on the "
    "rest; the best-validation epoch is scored on test. Expression data: the LSTM classifies each "
    "sequence, beside the CNN's accuracy on the apex frame alone. Micro-expression data: detection "
    "(micro vs none) and per-frame location, with the onset error. Cached under "
    "<cnn run>/sequence/<name>-<hash8>/."
)


def _folds(text: str) -> list[int]:
    from fercore.cli.train import _folds as parse

    return parse(text)


def _cnn_fold(text: str) -> int | None:
    if text == "matched":
        return None
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cnn-fold: expected a round number or 'matched', got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"--cnn-fold: expected a round number >= 0, got {v}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fercore.training.sequence import HEADS, POOLS, TASKS, LSTMSpec, SequenceConfig

    d, s = SequenceConfig(), LSTMSpec()
    p.add_argument("--run", required=True, help="the CNN run (directory, name or unique prefix)")
    p.add_argument("--data", required=True, metavar="FILE", help="sequence FaceSet .h5 file")
    p.add_argument("--layer", default=d.layer,
                   help="CNN layer whose output is a frame's features (default auto: classifier.relu4 for "
                        "expressions, features for micro-expressions; 'features' = the flattened output of "
                        "model.features; or e.g. features.conv3)")
    p.add_argument("--pool", choices=POOLS, default=d.pool, help="for conv layers: spatial max per channel, or every unit")
    p.add_argument("--cnn-fold", type=_cnn_fold, default=d.cnn_fold, metavar="T|matched",
                   help="CNN round whose weights make the features (default 0); 'matched': round t's for round t")
    p.add_argument("--task", choices=TASKS, default=d.task, help="default auto: micro when the data has micro-expression frames")
    p.add_argument("--head", choices=HEADS, default=d.head,
                   help="cnn: the CNN's own classifier on the last frame, corrected by the LSTM; linear: a new layer")
    p.add_argument("--folds", type=_folds, metavar="K|LIST", help="rounds to run: a count K or a comma list; default all")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--hidden", type=int, default=s.hidden, help=f"LSTM hidden units (default {s.hidden})")
    p.add_argument("--lstm-layers", type=int, default=s.layers)
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=s.bidirectional)
    p.add_argument("--dropout", type=float, default=s.dropout)
    p.add_argument("--center", action=argparse.BooleanOptionalAction, default=s.center,
                   help="subtract each sequence's median frame from the LSTM's input (default: on for micro-expressions)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from fercore.cli._progress import tqdm_progress
    from fercore.store.layout import resolve_run
    from fercore.training.sequence import LSTMSpec, SequenceConfig, train_sequence

    cnn_dir = resolve_run(args.run)
    spec = LSTMSpec(hidden=args.hidden, layers=args.lstm_layers, bidirectional=args.bidirectional, dropout=args.dropout,
                    center=args.center)
    config = SequenceConfig(layer=args.layer, pool=args.pool, cnn_fold=args.cnn_fold, task=args.task, head=args.head,
                            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            folds=None if args.folds is None else tuple(args.folds), seed=args.seed)
    t0 = time.perf_counter()
    with tqdm_progress(disable=args.quiet) as progress:
        out = train_sequence(cnn_dir, args.data, spec=spec, config=config, progress=progress)
    wall = time.perf_counter() - t0
    m = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    print(out)
    print(f"features: {cfg['layer']} ({cfg['n_features']} per frame) of {cnn_dir.name}; head {cfg['head']}")
    for f in m["folds"]:
        line = (f"  round {f['fold']}: test {100 * f['test_acc']:.2f}% (best validation {100 * f['best_val_acc']:.2f}% "
                f"at epoch {f['best_epoch']}; {f['n_train']}/{f['n_valid']}/{f['n_test']} sequences)")
        if f.get("cnn_apex_acc") is not None:
            line += f"; CNN on the apex frame {100 * f['cnn_apex_acc']:.2f}%"
        if f.get("onset_within_2") is not None:
            line += f"; onset within ±2 frames {100 * f['onset_within_2']:.1f}% of {f['n_detected_micro']}"
        print(line)
    print("protocol: " + m["protocol"]["text"])
    if m.get("cnn_apex") and m["cnn_apex"]["mean_acc"] is not None:
        c = m["cnn_apex"]
        print(f"LSTM {100 * m['mean_test_acc']:.2f} ± {100 * m['sd_test_acc']:.2f}% vs the CNN on the apex frame alone "
              f"{100 * c['mean_acc']:.2f} ± {100 * c['sd_acc']:.2f}% (same test sequences)")
    if m.get("micro"):
        mi = m["micro"]
        parts = [f"detection (micro vs none) {100 * mi['detection_acc']:.2f}%", f"frame F1 {mi['frame_f1']:.3f}"]
        if mi["onset_within_2"] is not None:
            parts.append(f"onset within ±2 frames for {100 * mi['onset_within_2']:.1f}% of {mi['n_detected_micro']} "
                         f"detected (median |error| {mi['onset_median_abs']:.1f} frames)")
        if mi.get("cnn_any_frame_detection_acc") is not None:
            parts.append(f"CNN frame by frame (any frame not neutral) {100 * mi['cnn_any_frame_detection_acc']:.2f}%")
        print("micro-expressions: " + "; ".join(parts))
    print(m["summary"])
    cached = " (cached run)" if wall < 0.5 * m["wall_s"] else ""
    print(f"LSTM training {m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} s CPU; features {m['feature_s']:.1f} s{cached}")
    return 0
