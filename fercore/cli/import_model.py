"""``python -m fercore import-model``: a network trained elsewhere, as a run fercore can record and show."""

from __future__ import annotations

import argparse

NAME = "import-model"
HELP = "import your own network (TorchScript, torch.export .pt2, ONNX, or a state dict with --factory) as a run"
DESCRIPTION = (
    "Import a facial-expression network trained elsewhere, with the input spec it was trained with "
    "(torchvision style: square side, channels, per-channel mean and std on [0, 1] pixels) and its class "
    "names in output order. Formats: TorchScript (.pt, .ts; torch.jit.save), torch.export programs (.pt2), "
    "ONNX (.onnx; Keras/TensorFlow via tf2onnx), or a state dict with --factory FILE.py:FUNCTION. The run "
    "lands in cache/runs/<name>-<hash8>/ with the model file copied in; then evaluate, record --data, analyze "
    "and the dashboard take it like a run trained here (docs/own_network.md)."
)


def _floats(text: str) -> list[float]:
    try:
        vals = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas (one per channel), got {text!r}") \
            from None
    if not vals:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return vals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_file", metavar="MODEL_FILE", help="the network: .pt/.ts (TorchScript), .pt2, .onnx, "
                        "or a state dict .pt/.pth with --factory")
    parser.add_argument("--classes", required=True, metavar="A,B,C",
                        help="the network's classes in output order, e.g. angry,disgust,fear,happy,sad,surprise,neutral "
                             "(mapped to canonical emotion names; names that map to none are kept and reported)")
    parser.add_argument("--size", type=int, required=True, metavar="S", help="square input side in pixels (e.g. 48, 64)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1,
                        help="1 (grey, default) or 3 (RGB: the grey face is replicated)")
    parser.add_argument("--mean", type=_floats, default=None, metavar="M[,M,M]",
                        help="per-channel mean on pixels scaled to [0, 1] (default 0), e.g. 0.485,0.456,0.406")
    parser.add_argument("--std", type=_floats, default=None, metavar="S[,S,S]",
                        help="per-channel std on pixels scaled to [0, 1] (default 1), e.g. 0.229,0.224,0.225")
    parser.add_argument("--factory", default=None, metavar="FILE.py:FUNCTION",
                        help="for a state dict: a Python file and a function in it that returns the nn.Module")
    parser.add_argument("--name", default=None, help="the run's name (default: the model file's name)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from fercore.cli._progress import tqdm_progress
    from fercore.store.layout import load_config
    from fercore.training.imported import describe, import_model

    with tqdm_progress(disable=args.quiet) as progress:
        run_dir = import_model(args.model_file, classes=args.classes, size=args.size, channels=args.channels,
                               mean=args.mean, std=args.std, name=args.name, factory=args.factory, progress=progress)
    cfg = load_config(run_dir)
    print(f"imported {args.model_file} as run {run_dir.name}")
    print(describe(cfg))
    mapped = [f"{g} -> {c}" for g, c in zip(cfg["classes_given"], cfg["class_names"], strict=True) if g != c]
    if mapped:
        print("classes mapped to canonical names: " + ", ".join(mapped))
    if cfg["classes_unmapped"]:
        print("WARNING: classes that name no emotion fercore knows (kept as given; evaluate cannot match them): "
              + ", ".join(cfg["classes_unmapped"]))
    if cfg["model"]["outputs"] == "probabilities":
        print("the network outputs probabilities (rows sum to 1): fercore reads them as such")
    print("conv layers, input to output: " + ", ".join(cfg["layers"]))
    print(f"next: python -m fercore evaluate --run {run_dir.name} --data FACES.h5; "
          f"python -m fercore record --run {run_dir.name} --data FACES.h5; python -m fercore analyze --run {run_dir.name}")
    print(run_dir)
    return 0
