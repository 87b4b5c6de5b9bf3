"""Recording speed and memory.

1. Throughput: ``record_model`` against a bare forward pass (``model(x)`` under ``no_grad``)
   over the same images and batch size, in one process, as adjacent pairs (the order
   alternating); the ratio bare time / record time is taken per pair and its median printed with
   the range (this machine's speed drifts by tens of percent between seconds), for the streaming
   pass alone and for the whole recording (streaming + the patches of the top-K + writing the
   file; projections are made on demand), with the fixed part (whole - streaming: bounded by the
   lists, not by N).
1b. Projections on demand: the first projection of one filter's top-16 of the deepest recorded
   layer (both lists, the filter's own entries only), and the same again from the cache, for
   ``--filters`` filters spread over the layer (median and range).
2. Memory: the peak traced memory (tracemalloc: numpy and Python allocations; torch's own
   allocator is not traced, but its per-batch buffers do not depend on N) of ``record_model``
   over N and over 4N images, each in a fresh subprocess, against the growth of the N x F
   float16 max-activation matrices (3N x F_total x 2 bytes). The peak resident set size of each
   subprocess (``resource.getrusage``) is printed too, minus the FaceSet's own images.

The model is the ``phantom-default`` network (zero-bias CNN, conv 8 / 16 / 128, 48 px, 8 classes),
freshly initialised; the images are the default phantom's first N (4N) faces when the phantom is
built, else random noise.

Run: ``python bench/bench_record.py [--n 600] [--batch-size 128] [--repeats 7] [--run RUN | --preset P]``
(``--run``: record that trained run's fold-0 weights instead of a fresh network; ``--preset``: a
fresh network of that preset at its input side, e.g. ``cpu-real`` or ``ferplus-vgg13-mv`` at 64 px).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _faceset(n: int, size: int = 48, seed: int = 0):
    """The default phantom's first ``n`` faces when it is built (``cache/datasets``; cycled with
    new subject names past its end), else noise."""
    from fercore.data.faceset import FaceSet
    from fercore.pipeline import phantom_path
    from fercore.store.faceset_h5 import load_faceset
    from fercore.training.presets import DEFAULT_PHANTOM

    path = phantom_path(DEFAULT_PHANTOM)
    if path.exists() and DEFAULT_PHANTOM["size"] == size:
        fs = load_faceset(path)
        reps = -(-n // len(fs))
        idx = np.arange(n) % len(fs)
        sub = fs.subset(idx)
        if reps > 1:
            rep = np.arange(n) // len(fs)
            sub.subjects = np.array([f"{s}~{r}" for s, r in zip(sub.subjects, rep, strict=True)])
            if sub.sequences is not None:
                sub.sequences = np.array([f"{s}~{r}" for s, r in zip(sub.sequences, rep, strict=True)])
        sub.meta = {"source": "phantom"}
        return sub

    rng = np.random.default_rng(seed)
    fs = FaceSet(images=rng.integers(0, 256, (n, size, size), dtype=np.uint8), labels=np.arange(n) % 8,
                 class_names=tuple(f"c{i}" for i in range(8)), aus=np.zeros((n, 0), np.float32),
                 au_ids=np.zeros(0), subjects=np.array([f"s{i // 16}" for i in range(n)]),
                 folds=np.arange(n) % 10)
    return fs


def _model(run: str | None = None, size: int = 48, preset: str = "phantom-default"):
    """A trained run's fold-0 network when ``run`` is given, else ``preset``'s network (with its AU
    head when the preset trains one) at the preset's input side (``size`` when it has none),
    freshly initialised."""
    from fercore.data.phantom.render import DRAWN_AUS
    from fercore.training.models import ModelSpec, build_model
    from fercore.training.presets import PRESETS

    if run:
        from fercore.store.layout import resolve_run
        from fercore.training.models import load_model

        return load_model(resolve_run(run), fold=0).eval()
    if preset not in PRESETS:
        raise SystemExit(f"bench_record: --preset {preset!r} is not a preset; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    n_aus = len(DRAWN_AUS) if p.config.au_weight else 0
    return build_model(ModelSpec(**{**p.model, "in_size": p.model.get("in_size") or size}, n_classes=8,
                                 n_aus=n_aus)).eval()


def throughput(n: int, batch_size: int, repeats: int, run: str | None = None, preset: str = "phantom-default",
               filters: int = 5) -> None:
    import torch

    from fercore.recording.record import record_model
    from fercore.training.inputs import to_input

    model = _model(run, preset=preset)
    size = model.spec.in_size  # the run's input side: faces are made at it
    fs = _faceset(n, size=size)
    tmp = Path(tempfile.mkdtemp())

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for s in range(0, n, batch_size):
                model(to_input(fs.images[s:s + batch_size], in_size=size, method="standardize"))
        return time.perf_counter() - t0

    def rec() -> tuple[float, float]:
        marks = {}

        def progress(done, total, stage):
            marks.setdefault(stage, time.perf_counter())

        t0 = time.perf_counter()
        record_model(model, fs, tmp / "r.h5", normalize_method="standardize", k=16, batch_size=batch_size,
                     progress=progress)
        t1 = time.perf_counter()
        return marks["patches"] - t0, t1 - t0

    warm = fs.subset(np.arange(min(n, 512)))  # warm up (caches, allocator) on a few batches
    with torch.no_grad():
        model(to_input(warm.images[:batch_size], in_size=size, method="standardize"))
    record_model(model, warm, tmp / "warm.h5", normalize_method="standardize", k=16, batch_size=batch_size)
    b, st, w = [], [], []
    for i in range(repeats):  # adjacent pairs, the order alternating: the ratios are per pair
        if i % 2:
            s_, w_ = rec()
            b_ = bare()
        else:
            b_ = bare()
            s_, w_ = rec()
        b.append(b_)
        st.append(s_)
        w.append(w_)
    b, st, w = np.array(b), np.array(st), np.array(w)
    print(f"throughput, {n} {fs.meta.get('source', 'noise')} images {size}x{size}, batch {batch_size}, torch threads {torch.get_num_threads()}, "
          f"{repeats} adjacent pairs, {'weights of ' + run if run else f'freshly initialised {preset} network'} "
          f"({model.spec.arch}, width {model.spec.width}):")
    print(f"  bare forward        median {np.median(b):7.3f} s  {n / np.median(b):8.0f} images/s")
    print(f"  record, streaming   median {np.median(st):7.3f} s  {n / np.median(st):8.0f} images/s  "
          f"ratio median {np.median(b / st):.2f} (pairs {np.min(b / st):.2f}-{np.max(b / st):.2f})")
    print(f"  record, whole       median {np.median(w):7.3f} s  {n / np.median(w):8.0f} images/s  "
          f"ratio median {np.median(b / w):.2f} (pairs {np.min(b / w):.2f}-{np.max(b / w):.2f}) "
          f"(+ patches of the top-16 and writing records.h5; projections on demand)")
    print(f"  fixed part (whole - streaming, does not grow with N): median {np.median(w - st):.3f} s")
    projections(model, fs, tmp / "r.h5", filters)


def projections(model, fs, path: Path, n_filters: int = 5) -> None:
    """Time the on-demand projection of single filters of the deepest recorded layer."""
    from fercore.recording.project import filter_projections
    from fercore.store.reader import RunReader
    from fercore.training.inputs import InputSpec
    from fercore.training.network import Network

    reader = RunReader(path.parent, records_file=path.name)
    layer = reader.layers[-1]
    net = Network(model, InputSpec(size=model.spec.in_size, normalize="standardize"), reader.class_names,
                  tuple(reader.layers))
    nf = reader.n_filters(layer)
    chosen = np.unique(np.linspace(0, nf - 1, n_filters).round().astype(int))
    first, cached = [], []
    for f in chosen:
        t0 = time.perf_counter()
        filter_projections(reader, layer, int(f), network=net, faceset=fs)
        first.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        filter_projections(RunReader(path.parent, records_file=path.name), layer, int(f), network=net, faceset=fs)
        cached.append(time.perf_counter() - t0)
    first, cached = np.array(first) * 1e3, np.array(cached) * 1e3
    print(f"  projections on demand, {layer} ({reader.projection(layer)}), one filter's top-16 (both lists), "
          f"{len(chosen)} filters: first {np.median(first):.0f} ms ({first.min():.0f}-{first.max():.0f}), "
          f"cached {np.median(cached):.1f} ms ({cached.min():.1f}-{cached.max():.1f})")


def _memory_child(n: int, batch_size: int, run: str | None = None, preset: str = "phantom-default") -> None:
    import resource
    import tracemalloc

    from fercore.recording.record import record_model
    from fercore.training.models import conv_layers, resolve_layer

    model = _model(run, preset=preset)
    fs = _faceset(n, size=model.spec.in_size)
    f_total = sum(resolve_layer(model, name).out_channels for name in conv_layers(model))
    tmp = Path(tempfile.mkdtemp())
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    record_model(model, fs, tmp / "r.h5", normalize_method="standardize", k=16, batch_size=batch_size)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"n": n, "peak": peak, "rss_peak": rss, "rss_before": rss0, "f_total": f_total,
                      "images": fs.images.nbytes, "source": fs.meta.get("source", "noise")}))


def memory(n: int, batch_size: int, run: str | None = None, preset: str = "phantom-default") -> None:
    res = {}
    for m in (n, 4 * n):
        out = subprocess.run([sys.executable, __file__, "--child", str(m), "--batch-size", str(batch_size)]
                             + (["--run", run] if run else []) + ["--preset", preset],
                             capture_output=True, text=True, check=True, env=dict(os.environ))
        res[m] = json.loads(out.stdout.strip().splitlines()[-1])
    a, b = res[n], res[4 * n]
    growth = 3 * n * a["f_total"] * 2
    diff = b["peak"] - a["peak"]
    mib = 1 / 2**20
    print(f"memory, N = {n} and 4N = {4 * n} {a['source']} images (F_total = {a['f_total']} filters over the conv layers):")
    print(f"  traced peak during record_model: N {a['peak'] * mib:.2f} MiB, 4N {b['peak'] * mib:.2f} MiB, "
          f"difference {diff * mib:.3f} MiB")
    print(f"  growth of the N x F float16 matrices (3N x F x 2 bytes): {growth * mib:.3f} MiB -> "
          f"{'OK' if diff <= growth else 'EXCEEDS'} (difference / matrix growth = {diff / growth:.2f})")
    rss_a = a["rss_peak"] - a["images"]
    rss_b = b["rss_peak"] - b["images"]
    print(f"  peak RSS minus the FaceSet images: N {rss_a * mib:.1f} MiB, 4N {rss_b * mib:.1f} MiB, "
          f"difference {(rss_b - rss_a) * mib:.1f} MiB (whole process incl. torch; noisy)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="N (the memory test also runs 4N)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-memory", action="store_true", help="throughput only")
    ap.add_argument("--run", default=None, help="record this trained run's fold-0 weights (default: a fresh network)")
    ap.add_argument("--preset", default="phantom-default",
                    help="record this preset's network, freshly initialised (e.g. cpu-real: zero-bias at width 0.5; "
                         "ferplus-vgg13-mv: VGG13 at 64 px); default phantom-default")
    ap.add_argument("--filters", type=int, default=5, help="filters timed for projections on demand")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _memory_child(args.child, args.batch_size, args.run, args.preset)
        return 0
    throughput(args.n, args.batch_size, args.repeats, args.run, args.preset, args.filters)
    if not args.skip_memory:
        memory(args.n, args.batch_size, args.run, args.preset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
