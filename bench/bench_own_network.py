"""Networks trained elsewhere, end to end on the default phantom faces: what each stage costs and
whether their permuted null is calibrated like the untrained null of a network trained here.

For each of the tests' three foreign architectures (``tests/foreign_nets.py``: ResNet-style,
mini-Xception-style, 3-channel ImageNet-normalised) the script trains the network outside fercore
(plain PyTorch, ``--steps`` SGD steps on the phantom faces with the network's own normalisation),
saves it as TorchScript, ONNX and factory + state dict, imports each, and times import, evaluate,
record (k = ``--k``) and analyse with the permuted null. It prints per network and layer the funnel
of the run and of its null (raw / distinct / beyond emotion), the null's beyond-emotion count being
the calibration figure (target: at most 1 per layer, as for the untrained null), and whether the three
formats give identical record indices.

With ``--fernet`` it also records fercore's own zero-bias CNN and VGG13 (half width, untrained, 64 px,
``--fernet-n`` faces) twice, with every projection, through their fast path (deconvnet, the layer
chain's geometry) and as plain modules through the walk for any network (hooks, measured fields,
guided backpropagation), and prints both times, their ratio and whether the lists and geometry
agree.

Usage::

    python bench/bench_own_network.py [--n 2400] [--steps 300] [--k 16] [--nets resnet xception rgb]
                                      [--fernet] [--fernet-n 480]

Runs in a cache of its own (``$FERCORE_CACHE``, default a ``bench-own-network`` folder in the
system temporary directory). The accuracy printed is on the same phantom faces the network was
trained on (this bench is about the pipeline, not about generalisation).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the foreign architectures are the tests' own fixtures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2400, help="phantom faces (default 2400, the default run's)")
    ap.add_argument("--steps", type=int, default=300, help="SGD steps of batch 32 outside fercore")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--nets", nargs="+", default=["resnet", "xception", "rgb"])
    ap.add_argument("--fernet", action="store_true", help="also time FERNet's fast path against the walk for any module")
    ap.add_argument("--fernet-n", type=int, default=480)
    args = ap.parse_args()
    os.environ.setdefault("FERCORE_CACHE", str(Path(tempfile.gettempdir()) / "bench-own-network"))

    import foreign_nets
    import h5py
    import numpy as np
    import torch

    from fercore.analysis.analyze import analyze
    from fercore.data.phantom import generate_faceset
    from fercore.pipeline import phantom_path
    from fercore.recording.project import ensure_projections
    from fercore.recording.record import record
    from fercore.store.faceset_h5 import load_faceset, save_faceset
    from fercore.store.layout import cache_dir, runs_dir
    from fercore.store.reader import open_run
    from fercore.training.evaluate import evaluate_run
    from fercore.training.imported import import_model

    opts = dict(n=args.n, size=48, seed=0)
    data = phantom_path(opts)
    if not data.exists():
        save_faceset(generate_faceset(**opts), data)
    fs = load_faceset(data)
    print(f"cache {cache_dir()}; phantom faces: {len(fs)} images of {fs.size} px, {len(fs.class_names)} classes; "
          f"k = {args.k}; torch threads {torch.get_num_threads()}")
    for name in args.nets:
        t0 = time.perf_counter()
        net = foreign_nets.train_briefly(name, fs.images, fs.labels, steps=args.steps)
        train_s = time.perf_counter() - t0
        files = foreign_nets.save_formats(net, name, cache_dir() / "files")
        print(f"\n== {name}: {sum(p.numel() for p in net.parameters())} parameters, trained {args.steps} steps "
              f"outside fercore in {train_s:.1f} s")
        indices = {}
        for fmt, kw in files.items():
            t0 = time.perf_counter()
            run = import_model(**kw, name=f"{name}-{fmt}", root=runs_dir())
            t_import = time.perf_counter() - t0
            (run / "records.h5").unlink(missing_ok=True)
            t0 = time.perf_counter()
            record(run, data=data, k=args.k)
            t_record = time.perf_counter() - t0
            with h5py.File(run / "records.h5") as f:
                indices[fmt] = [f["layers"][la]["topk/index"][()] for la in open_run(run).layers]
            line = f"  {fmt:10s} import {t_import:5.2f} s, record {t_record:6.1f} s"
            if fmt == "torchscript":
                t0 = time.perf_counter()
                ensure_projections(run)
                line += f", every projection (on demand) {time.perf_counter() - t0:5.1f} s"
                t0 = time.perf_counter()
                ev = evaluate_run(run, data)
                t_eval = time.perf_counter() - t0
                t0 = time.perf_counter()
                analyze(run, null="permuted")
                t_an = time.perf_counter() - t0
                line += (f", evaluate {t_eval:4.1f} s (accuracy {100 * ev['accuracy']:.1f} % on its training faces), "
                         f"null + analyze {t_an:6.1f} s")
                main_run = run
            print(line)
        same = all(all(np.array_equal(a, b) for a, b in zip(indices[f], indices["torchscript"], strict=True))
                   for f in indices)
        print(f"  three formats give identical top-K indices: {same}")
        summary = open_run(main_run).summary()
        print("  layer                          filters   raw (null)   distinct (null)   beyond emotion (null)")
        worst = 0
        for row in summary["layers"]:
            s, n = row["stages"], row["null_stages"]
            worst = max(worst, n["beyond_emotion"]["filters"])
            print(f"  {row['layer']:30s} {row['n_filters']:7d}   {s['raw']['filters']:3d} ({n['raw']['filters']:3d})"
                  f"   {s['distinct']['filters']:8d} ({n['distinct']['filters']:3d})"
                  f"   {s['beyond_emotion']['filters']:13d} ({n['beyond_emotion']['filters']:3d})")
        for w in summary.get("warnings", []):
            print(f"  warning: {w}")
        print(f"  permuted null, most filters beyond emotion in one layer: {worst} (target <= 1)")
    if args.fernet:
        _fernet_paths(args)


def _fernet_paths(args) -> None:
    import h5py
    import numpy as np
    import torch
    from torch import nn

    from fercore.data.phantom import generate_faceset
    from fercore.recording.record import record_model
    from fercore.store.layout import cache_dir
    from fercore.training.inputs import InputSpec
    from fercore.training.models import ModelSpec, build_model

    fs = generate_faceset(n=args.fernet_n, size=64, seed=0)
    print(f"\n== FERNet's fast path against the walk for any module ({len(fs)} faces, 64 px, k = 4, every "
          "projection made)")
    for spec in (ModelSpec(arch="zero_bias", in_size=64, width=0.5), ModelSpec(arch="vgg13", in_size=64, width=0.5)):
        model = build_model(spec).eval()

        class Plain(nn.Module):  # the same network, not a FERNet
            def __init__(self, net):
                super().__init__()
                self.features, self.classifier = net.features, net.classifier

            def forward(self, x):
                return self.classifier(torch.flatten(self.features(x), 1))

        a, b = cache_dir() / "fast.h5", cache_dir() / "any.h5"
        t0 = time.perf_counter()
        record_model(model, fs, a, normalize_method="standardize", k=4, projections="all")
        fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        record_model(Plain(model), fs, b, inputs=InputSpec(size=64, normalize="standardize"), k=4, projections="all")
        walk = time.perf_counter() - t0
        with h5py.File(a) as fa, h5py.File(b) as fb:
            same = all(np.array_equal(fa["layers"][la]["topk/index"][()], fb["layers"][la]["topk/index"][()])
                       and all(fa["layers"][la].attrs[k] == fb["layers"][la].attrs[k] for k in ("rf", "jump", "start"))
                       for la in fa["layers"])
        print(f"  {spec.arch} width 0.5: fast path {fast:.1f} s, any module {walk:.1f} s (ratio {walk / fast:.2f}); "
              f"identical lists and geometry: {same}")


if __name__ == "__main__":
    main()
