"""Deconvnet projections: fercore against Captum, the reference implementation.

Times the same F x K projections (a conv layer's top-K per filter: the images with the highest
spatial maximum, each projected from its maximal unit, scaled by that activation) two ways:

- **Captum**, the way a Captum user does it: one ``NeuronDeconvolution(model, conv).attribute``
  call per (filter, image) with ``neuron_selector=(f, i, j)`` (a forward pass of the whole model and
  a backward pass over the full input), times the activation;
- **fercore**, the way ``record_model`` does it: a forward pass over the listed images, 128 at a
  time, keeping the max-pool switches (``forward_switches``), then ``deconv_project`` of all their
  entries at once, on the receptive-field boxes only.

Each repeat times one adjacent (Captum, fercore) pair, the order alternating (this machine's
speed drifts); the table gives the median and the range over the repeats, and the fercore/Captum
time ratio per pair, by wall clock and by process CPU time (less disturbed by other jobs on a
shared machine). ``--filters N`` times Captum on N of the F filters only (spread over the layer)
and scales its time by F / N (said in the output); fercore always does all F x K. Captum 0.9.0
never empties its list of removed ReLU hook handles, so a reused ``NeuronDeconvolution`` gets
slower with every call; the bench empties that list after each call (fair to Captum, and the
scaling from a subset stays exact) unless ``--captum-as-is``. Before timing, both are compared on
a few entries: the largest absolute difference of fercore's box against Captum's map cut to the
same box.

Which network and images: ``--run RUN`` (default: the newest run under the cache) and its FaceSet;
without any run, the default network's spec (zero-bias, conv 8 / 16 / 128, 48 px), freshly
initialised, on 600 phantom faces (``generate_faceset(n=600, size=48, seed=0)``).

Run: ``python bench/bench_captum.py [--run RUN] [--layer features.conv3] [--k 16] [--n N]
[--filters 16] [--repeats 5] [--threads T] [--captum-as-is]``
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: the default network when the cache holds no run (``phantom-default``'s conv stack, untrained)
DEFAULT_SPEC = dict(arch="zero_bias", in_size=48, n_classes=8, width=0.125, channels=(8, 16, 128))
#: images per switch pass, as ``record_model``'s second pass
SWITCH_BATCH = 128


def _newest_run() -> Path | None:
    """The newest run directory under the cache that has weights, or None."""
    from fercore.store.layout import runs_dir, trained_folds

    root = runs_dir()
    runs = [d for d in root.iterdir() if (d / "config.json").is_file() and trained_folds(d)] if root.is_dir() else []
    return max(runs, key=lambda d: (d / "config.json").stat().st_mtime, default=None)


def _setup(run: str | None, n: int | None):
    """(model, images (N, S, S) uint8, normalisation, description)."""
    from fercore.store.layout import load_config, resolve_run, run_faceset_path
    from fercore.training.models import ModelSpec, build_model, load_model

    run_dir = resolve_run(run) if run else _newest_run()
    if run_dir is None:
        from fercore.data.phantom import generate_faceset

        fs = generate_faceset(n=n or 600, size=48, seed=0)
        model = build_model(ModelSpec(**DEFAULT_SPEC)).eval()
        return model, fs.images, "standardize", (f"no run in the cache: the default network's spec {DEFAULT_SPEC}, "
                                                 f"freshly initialised, on {len(fs)} phantom faces (seed 0)")
    from fercore.store.faceset_h5 import load_faceset

    cfg = load_config(run_dir)
    model = load_model(run_dir)  # the lowest trained round: fold 0, the one record() records
    fs = load_faceset(run_faceset_path(run_dir))
    images = fs.images[:n] if n else fs.images
    return model, images, cfg.get("normalize") or "standardize", f"run {run_dir.name}, {len(images)} images of its FaceSet"


@torch.no_grad()
def _top_k(model, x: torch.Tensor, layer: str, k: int):
    """Per filter the k images with the highest spatial maximum of ``layer``'s output (a stable
    descending sort, ties to the earlier image), as ``record_model`` lists them.

    Returns
    -------
    image : (F*K,) int64, filt : (F*K,) int64, pos : (F*K, 2) int64 (row, col of the first maximum),
    value : (F*K,) float32
    """
    from fercore.training.models import forward_features

    maxes, args = [], []
    for s in range(0, len(x), 256):
        a = forward_features(model, x[s:s + 256], until=layer).flatten(2)  # (B, F, h*w)
        mx, arg = a.max(dim=2)
        maxes.append(mx)
        args.append(arg)
    mx, arg = torch.cat(maxes), torch.cat(args)  # (N, F)
    w = forward_features(model, x[:1], until=layer).shape[-1]
    order = torch.from_numpy(np.argsort(-mx.numpy(), axis=0, kind="stable")[:k].T.copy())  # (F, K)
    n_f = mx.shape[1]
    filt = torch.arange(n_f)[:, None].expand(n_f, k)
    flat = arg[order, filt]
    pos = torch.stack([flat // w, flat % w], -1)
    return order.reshape(-1), filt.reshape(-1), pos.reshape(-1, 2), mx[order, filt].reshape(-1)


def _fercore(model, x, layer, image, filt, pos, value) -> torch.Tensor:
    """(P, rf, rf) projections the way ``record_model`` computes them: a switch pass over the
    listed images, 128 at a time, and the entries on those images projected together."""
    from fercore.recording.deconv import deconv_project, forward_switches
    from fercore.training.models import layer_geometry

    rf = layer_geometry(model, layer).rf
    wanted = torch.unique(image)
    out = torch.empty(len(image), rf, rf)
    with torch.no_grad():
        for s in range(0, len(wanted), SWITCH_BATCH):
            chunk = wanted[s:s + SWITCH_BATCH]
            switches = forward_switches(model, x[chunk], layer)
            sel = torch.nonzero(torch.isin(image, chunk))[:, 0]
            local = torch.searchsorted(chunk, image[sel])
            out[sel] = deconv_project(model, x[chunk], layer, local, filt[sel], pos[sel], value[sel], switches=switches)
    return out


def _captum(nd, x, image, filt, pos, value, *, as_is: bool = False) -> list[torch.Tensor]:
    """One ``attribute`` call per (filter, image): the (S, S) map times the activation.

    Captum 0.9.0 keeps every removed ReLU hook handle in ``nd.deconv.backward_hooks`` and walks
    them all again on each call (the list is never cleared), so a reused instance gets slower
    call by call; unless ``as_is``, the list of (already removed) handles is emptied after each
    call, which keeps Captum's cost per call constant (and the scaling from a subset fair)."""
    out = []
    for p in range(len(image)):
        b, f, i, j = int(image[p]), int(filt[p]), int(pos[p, 0]), int(pos[p, 1])
        m = nd.attribute(x[b:b + 1], neuron_selector=(f, i, j))
        if not as_is:
            nd.deconv.backward_hooks.clear()
        out.append(value[p] * m.detach()[0, 0])
    return out


def _box(full: torch.Tensor, geo, i: int, j: int) -> torch.Tensor:
    """(rf, rf) crop of an (S, S) map under unit (i, j)'s box, 0 where the box leaves the image."""
    size = full.shape[-1]
    x0, y0, x1, y1 = geo.box(i, j)
    crop = torch.zeros(geo.rf, geo.rf)
    ys, xs = slice(max(y0, 0), min(y1, size - 1) + 1), slice(max(x0, 0), min(x1, size - 1) + 1)
    crop[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = full[ys, xs]
    return crop


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="a run directory, name or prefix (default: the newest run in the cache)")
    ap.add_argument("--layer", default="features.conv3", help="conv layer (dotted name)")
    ap.add_argument("--k", type=int, default=16, help="top images per filter")
    ap.add_argument("--n", type=int, default=None, help="use the first N images only (default: all; 600 phantom faces without a run)")
    ap.add_argument("--filters", type=int, default=16, help="time Captum on this many filters and scale to all (0: all)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--check", type=int, default=12, help="entries compared before timing")
    ap.add_argument("--captum-as-is", action="store_true",
                    help="keep Captum 0.9.0's growing list of removed hook handles (each call slower than the last)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    import captum
    from captum.attr import NeuronDeconvolution

    from fercore.training.inputs import to_input
    from fercore.training.models import conv_layers, layer_geometry, resolve_layer

    if args.threads:
        torch.set_num_threads(args.threads)
    model, images, method, source = _setup(args.run, args.n)
    convs = conv_layers(model)
    if args.layer not in convs:
        raise SystemExit(f"--layer {args.layer!r}: not a conv layer of this model; conv layers are {', '.join(convs)}")
    layer, k = args.layer, args.k
    geo = layer_geometry(model, layer)
    x = to_input(images, in_size=model.spec.in_size, method=method)  # (N, 1, S, S)
    image, filt, pos, value = _top_k(model, x, layer, k)
    n_f = resolve_layer(model, layer).out_channels
    n_sub = n_f if args.filters <= 0 else min(args.filters, n_f)
    subset = np.unique(np.linspace(0, n_f - 1, n_sub).round().astype(int))  # spread over the layer
    n_sub = len(subset)
    sub = torch.from_numpy(np.isin(filt.numpy(), subset))
    nd = NeuronDeconvolution(model, resolve_layer(model, layer))

    # equal projections: fercore's box against Captum's map cut to the box, on a few entries (with
    # a non-negative activation: the projection is positively homogeneous only, see the last line)
    mine = _fercore(model, x, layer, image, filt, pos, value)
    ok = np.flatnonzero(value.numpy() >= 0)
    pick = ok[np.unique(np.linspace(0, len(ok) - 1, args.check).round().astype(int))]
    theirs = _captum(nd, x, image[pick], filt[pick], pos[pick], value[pick])
    diff = peak = 0.0
    for q, p in enumerate(pick):
        ref = _box(theirs[q], geo, int(pos[p, 0]), int(pos[p, 1]))
        diff = max(diff, float((mine[p] - ref).abs().max()))
        peak = max(peak, float(ref.abs().max()))
    n_neg = int((value < 0).sum())

    _captum(nd, x, image[sub][:8], filt[sub][:8], pos[sub][:8], value[sub][:8])  # warm up
    wall = {"captum": [], "fercore": []}
    cpu = {"captum": [], "fercore": []}
    for r in range(args.repeats):  # adjacent pairs, the order alternating
        for which in (("captum", "fercore") if r % 2 == 0 else ("fercore", "captum")):
            t0, c0 = time.perf_counter(), time.process_time()
            if which == "captum":
                _captum(nd, x, image[sub], filt[sub], pos[sub], value[sub], as_is=args.captum_as_is)
                scale = n_f / n_sub
            else:
                _fercore(model, x, layer, image, filt, pos, value)
                scale = 1.0
            wall[which].append((time.perf_counter() - t0) * scale)
            cpu[which].append((time.process_time() - c0) * scale)
    wall = {key: np.array(v) for key, v in wall.items()}
    cpu = {key: np.array(v) for key, v in cpu.items()}
    total = n_f * k
    print(f"deconvnet projections of {layer} top-{k}: F = {n_f} filters x K = {k} = {total} projections "
          f"(rf {geo.rf} px, input {model.spec.in_size} px), {source}")
    print(f"captum {captum.__version__}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"{args.repeats} repeats (adjacent pairs, order alternating); wall and process CPU time")
    print("Captum: one NeuronDeconvolution instance reused, " + (
        "as shipped (its list of removed hook handles grows with every call)" if args.captum_as_is else
        "its list of removed hook handles emptied after each call (as shipped, 0.9.0 gets slower call by call; "
        "--captum-as-is)"))
    if n_sub < n_f:
        print(f"Captum timed on {n_sub} of {n_f} filters ({int(sub.sum())} attribute calls) and scaled x {n_f / n_sub:.2f} "
              f"to all {total}; fercore timed on all {total}")
    print()
    print(f"| {'path':<66} | {'clock':<5} | {'all F x K, median':>17} | {'range':>21} | {'per projection':>14} |")
    print(f"|{'-' * 68}|{'-' * 7}|{'-' * 19}|{'-' * 23}|{'-' * 16}|")
    for key, name in (("captum", "Captum NeuronDeconvolution, one attribute call per (filter, image)"),
                      ("fercore", "fercore forward_switches + deconv_project, batched (record_model)")):
        for clock, t in (("wall", wall[key]), ("CPU", cpu[key])):
            print(f"| {name:<66} | {clock:<5} | {np.median(t):15.3f} s | {np.min(t):8.3f} - {np.max(t):8.3f} s | "
                  f"{np.median(t) / total * 1e3:11.4f} ms |")
    print()
    for clock, t in (("wall", wall), ("CPU", cpu)):
        ratio = t["fercore"] / t["captum"]
        print(f"time ratio fercore / Captum ({clock}): median {np.median(ratio):.4f} "
              f"(repeats {np.min(ratio):.4f} - {np.max(ratio):.4f}); Captum / fercore {np.median(1 / ratio):.0f}x")
    print(f"check on {len(pick)} entries: max |fercore - Captum x activation| on the box = {diff:.3g} "
          f"(largest |projection| {peak:.3g}); entries with a negative activation: {n_neg} of {total}"
          + (" (for these fercore != activation x Captum's unit projection: the backward ReLUs are not odd)" if n_neg else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
