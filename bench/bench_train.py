"""One training epoch through fercore's trainer against a bare PyTorch loop (same tensors, model).

Both run the same number of SGD steps over the same pre-normalised images with augmentation off.
The trainer's figure is its own timing of the epoch's training pass (``epoch_s`` in
``metrics.json``); the whole ``train()`` call (file load, validation, per-epoch checkpoint, test,
run files) is printed separately. The two are timed alternately, several times, in one process;
the ratios of the medians and of the fastest runs are printed: target at most 1.10.

    python bench/bench_train.py [--n 1200] [--size 48] [--width 0.25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fercore.data.faceset import FaceSet  # noqa: E402
from fercore.store.faceset_h5 import save_faceset  # noqa: E402
from fercore.training.inputs import to_input  # noqa: E402
from fercore.training.loop import TrainConfig, configure_threads, fold_rounds, train  # noqa: E402
from fercore.training.models import ModelSpec, build_model  # noqa: E402


def _faceset(n: int, size: int) -> FaceSet:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 8
    subjects = np.arange(n) // 8
    return FaceSet(images=rng.integers(0, 256, (n, size, size), dtype=np.uint8), labels=labels,
                   class_names=[f"c{i}" for i in range(8)], aus=np.zeros((n, 0)), au_ids=[],
                   subjects=[str(s) for s in subjects], folds=subjects % 10,
                   meta={"preprocess": {"normalize": "standardize"}})


def bare_epoch(spec: ModelSpec, x: torch.Tensor, y: torch.Tensor, batch: int, seed: int) -> float:
    """The plain loop: shuffle, forward, loss, backward, step."""
    model = build_model(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    perm = torch.randperm(len(x), generator=g)
    model.train()
    for b in range(0, len(x), batch):
        idx = perm[b:b + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1200, help="images in the FaceSet (80%% train one round)")
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    threads = configure_threads()
    fs = _faceset(args.n, args.size)
    spec = ModelSpec(arch="zero_bias", in_size=args.size, n_classes=8, width=args.width)
    rnd = fold_rounds(fs, folds=[0])[0]
    x = to_input(fs.images, in_size=args.size, method="standardize")[torch.as_tensor(rnd.train)]
    y = torch.as_tensor(fs.labels[rnd.train])
    n_train = len(rnd.train)
    trainer, bare, whole = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.h5"
        save_faceset(fs, path)
        for r in range(args.repeats + 1):  # the first pair warms up
            cfg = TrainConfig(epochs=1, batch_size=args.batch, folds=[0], seed=r)
            t0 = time.perf_counter()
            run = train(path, spec, cfg, root=Path(tmp) / "runs")
            t_call = time.perf_counter() - t0
            t_pass = json.loads((run / "metrics.json").read_text())["folds"][0]["epoch_s"][0]
            t_bare = bare_epoch(spec, x, y, args.batch, r)
            if r:
                trainer.append(t_pass)
                whole.append(t_call)
                bare.append(t_bare)
    tm, bm, wm = statistics.median(trainer), statistics.median(bare), statistics.median(whole)
    print(f"torch threads {threads}; {n_train} training images {args.size}px, zero_bias width {args.width}, "
          f"batch {args.batch}; medians of {args.repeats} alternating runs")
    print(f"bare loop     : {bm:.3f} s/epoch  {n_train / bm:8.1f} img/s  (runs: {', '.join(f'{t:.3f}' for t in bare)})")
    print(f"trainer epoch : {tm:.3f} s/epoch  {n_train / tm:8.1f} img/s  (runs: {', '.join(f'{t:.3f}' for t in trainer)})")
    print(f"ratio trainer/bare (training pass): {tm / bm:.3f} of the medians, {min(trainer) / min(bare):.3f} of the "
          f"fastest runs (target <= 1.10; on a shared CPU the fastest runs are the least disturbed)")
    print(f"whole train() call, 1 epoch (load file, prepare inputs, validate, checkpoint, test, write run): "
          f"{wm:.3f} s, {wm / bm:.2f}x the bare epoch")


if __name__ == "__main__":
    main()
