"""Expressions in time: phantom sequence speed, the LSTM over the default CNN, filters in time.

Prints:

1. phantom sequence frames per second of :func:`fercore.data.phantom.sequences.generate_sequences`
   at 48 px on one core (OpenCV and BLAS at one thread; best and median wall-clock of five runs,
   best CPU time); target >= 500 frames/s;
2. the LSTM on the default run's features (``phantom-default``, fold-0 weights, frozen) over the
   default phantom sequences (80 subjects x 8 expressions x 16 frames, 10 subject folds): sequence
   accuracy per round beside the CNN on each test sequence's apex frame alone, and the training
   time (features on the process's cores, two here; the LSTM on one torch thread, which is
   faster than two for a network this small); targets >= 95 %, >= the CNN, <= 3 minutes;
3. the same on micro-expression sequences (half of 640 neutral sequences hold one 2-5 frame,
   intensity 1-2 partial expression): detection accuracy (target >= 90 %), per-frame F1, the
   share of detected micro-expressions whose onset is found within +-2 frames, and the CNN frame
   by frame (a sequence counts as detected when any frame is called non-neutral);
4. filters in time (:mod:`fercore.analysis.temporal`): for the ground-truth AU groups of
   ``docs/fau_groundtruth.md``, the best conv3 filter's median within-sequence correlation with
   the AU's intensity curve (target >= 0.8), for the default network and its untrained null, with
   the control ``r_absent`` and the most AU-specific filter.

Usage::

    python bench/bench_sequences.py [--speed-only] [--retrain] [--subjects 80] [--n-speed 640]

The default run is built (or found) like ``python -m fercore default`` builds it (set
``FERCORE_CACHE`` to keep it apart); the sequence files go to ``datasets_dir()``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from fercore.data.phantom import sequences as ps  # noqa: E402

GROUPS = [(1, 2), (4,), (5,), (6,), (9,), (12,), (15,), (20,), (25, 26)]


def speed(n_frames: int, size: int, repeats: int = 5) -> tuple[float, float, float]:
    """Frames/s of generate_sequences: best and median wall-clock, best CPU time."""
    ps.generate_sequences(1, per_subject=2, n_frames=16, size=size, seed=99)  # warm the caches
    per = max(1, n_frames // (repeats * 16 * 8))
    walls, cpus = [], []
    for r in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fs = ps.generate_sequences(per, per_subject=8, n_frames=16, size=size, seed=1 + r)
        walls.append(len(fs) / (time.perf_counter() - w0))
        cpus.append(len(fs) / (time.process_time() - c0))
    return max(walls), float(np.median(walls)), max(cpus)


def sequence_file(**options) -> Path:
    """The sequence FaceSet of these options, generated once under ``datasets_dir()``."""
    from fercore.store.faceset_h5 import save_faceset
    from fercore.store.layout import datasets_dir
    from fercore.util import stable_hash

    key = stable_hash({**options, "sequence_version": ps.SEQUENCE_VERSION})[:8]
    path = datasets_dir() / f"phantom-seq-{options.get('kind', 'expression')}-{key}.h5"
    if not path.exists():
        save_faceset(ps.generate_sequences(**options), path)
    return path


def default_run() -> Path:
    from fercore.data.phantom import generate_faceset
    from fercore.pipeline import DEFAULT_PRESET, phantom_path
    from fercore.store.faceset_h5 import save_faceset
    from fercore.training.presets import DEFAULT_PHANTOM, train_preset

    path = phantom_path()
    if not path.exists():
        save_faceset(generate_faceset(**DEFAULT_PHANTOM), path)
    return Path(train_preset(path, DEFAULT_PRESET))


def untrained(run_dir: Path):
    """The run's untrained null network: ``<run>/null/untrained`` if built, else the same spec and
    seed offset as :func:`fercore.analysis.nulls.ensure_null` uses."""
    from fercore.analysis.nulls import NULL_SEED_OFFSET
    from fercore.store.layout import load_config
    from fercore.training.models import ModelSpec, build_model, load_model

    null = run_dir / "null" / "untrained"
    if (null / "weights" / "fold0.pt").exists():
        return load_model(null, 0), "null/untrained (ensure_null)"
    spec = dict(load_config(run_dir)["model"])
    spec["init_seed"] = int(spec.get("init_seed", 0)) + NULL_SEED_OFFSET
    if spec.get("channels") is not None:
        spec["channels"] = tuple(spec["channels"])
    return build_model(ModelSpec(**spec)).eval(), "built from the run's spec, init_seed + NULL_SEED_OFFSET"


def lstm(run_dir: Path, data: Path, retrain: bool) -> dict:
    from fercore.store.faceset_h5 import load_faceset
    from fercore.training.sequence import (
        LSTMSpec,
        SequenceConfig,
        resolve_config,
        sequence_dir_for,
        train_sequence,
    )

    spec, config = LSTMSpec(), SequenceConfig()
    if retrain:
        fs = load_faceset(data)
        task, rspec, rconfig = resolve_config(fs, spec, config)
        shutil.rmtree(sequence_dir_for(run_dir, data, fs.content_hash(), rspec, rconfig, task), ignore_errors=True)
    t0 = time.perf_counter()
    out = train_sequence(run_dir, data, spec=spec, config=config)
    wall = time.perf_counter() - t0
    m = json.loads((out / "metrics.json").read_text())
    m["_dir"], m["_call_s"] = str(out), wall
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-speed", type=int, default=640, help="frames per speed run (default 640)")
    ap.add_argument("--speed-only", action="store_true", help="only the generation speed")
    ap.add_argument("--retrain", action="store_true", help="delete the cached sequence runs and train them again")
    ap.add_argument("--subjects", type=int, default=80, help="subjects of the sequence sets (default 80)")
    args = ap.parse_args()
    cv2.setNumThreads(1)

    print(f"== phantom sequence speed (one core, 48 px, 16-frame sequences; {args.n_speed} frames x 5 runs) ==")
    best, median, cpu = speed(args.n_speed, 48)
    print(f"  {best:7.0f} frames/s wall (best), {median:7.0f} (median), {cpu:7.0f} frames/s CPU   (target >= 500)")
    assert "torch" not in sys.modules, "the phantom must not import torch"
    if args.speed_only:
        return 0

    import torch

    from fercore.analysis.temporal import filter_au_correlation, sequence_curves
    from fercore.store.faceset_h5 import load_faceset
    from fercore.store.layout import load_config
    from fercore.training.loop import configure_threads
    from fercore.training.models import load_model
    from fercore.training.sequence import frame_features

    configure_threads()
    run_dir = default_run()
    print(f"\n== default run {run_dir.name} (fold-0 weights, frozen); torch threads {torch.get_num_threads()} ==")
    expr = sequence_file(n_subjects=args.subjects, kind="expression")
    micro = sequence_file(n_subjects=args.subjects, kind="micro")

    m = lstm(run_dir, expr, args.retrain)
    print(f"\n== LSTM, expression sequences ({expr.name}) ==")
    print("  round | LSTM test % | CNN apex frame % | best epoch")
    for f in m["folds"]:
        print(f"  {f['fold']:>5} | {100 * f['test_acc']:11.2f} | {100 * f['cnn_apex_acc']:16.2f} | {f['best_epoch']:>10}")
    c = m["cnn_apex"]
    print(f"  LSTM {100 * m['mean_test_acc']:.2f} ± {100 * m['sd_test_acc']:.2f}%   CNN on the apex frame alone "
          f"{100 * c['mean_acc']:.2f} ± {100 * c['sd_acc']:.2f}%   (targets: LSTM >= 95 % and >= CNN)")
    print(f"  rounds whose best-validation model is the untrained start (= the CNN on the last frame): "
          f"{sum(f['best_epoch'] == 0 for f in m['folds'])} of {len(m['folds'])}")
    print(f"  LSTM training {m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} s CPU on {m['torch_threads']} thread(s); "
          f"features {m['feature_s']:.1f} s   (target <= 180 s){' [cached run]' if m['_call_s'] < 0.5 * m['wall_s'] else ''}")
    print(f"  protocol: {m['protocol']['text']}")

    mm = lstm(run_dir, micro, args.retrain)
    mi = mm["micro"]
    print(f"\n== LSTM, micro-expression sequences ({micro.name}) ==")
    print("  round | detection % | frame F1 | onset within ±2 | CNN any-frame %")
    for f in mm["folds"]:
        on = "-" if f["onset_within_2"] is None else f"{100 * f['onset_within_2']:.1f}% of {f['n_detected_micro']}"
        print(f"  {f['fold']:>5} | {100 * f['test_acc']:11.2f} | {f['frame_f1']:8.3f} | {on:>15} | "
              f"{100 * f['cnn_any_frame_detection_acc']:.2f}")
    print(f"  detection {100 * mi['detection_acc']:.2f} ± {100 * mm['sd_test_acc']:.2f}% (target >= 90 %); frame F1 "
          f"{mi['frame_f1']:.3f}; onset within ±2 frames {100 * mi['onset_within_2']:.1f}% of {mi['n_detected_micro']} "
          f"detected (median |error| {mi['onset_median_abs']:.1f}); the CNN frame by frame "
          f"{100 * mi['cnn_any_frame_detection_acc']:.2f}%")
    print(f"  LSTM training {mm['wall_s']:.1f} s wall, {mm['cpu_s']:.1f} s CPU; features {mm['feature_s']:.1f} s")

    print("\n== filters in time: conv3 filter x AU, median within-sequence r over the sequences showing the AU ==")
    fs = load_faceset(expr)
    method = load_config(run_dir)["normalize"]
    null_model, how = untrained(run_dir)
    ids = fs.au_ids.tolist()
    res = {}
    for name, model in (("trained", load_model(run_dir, 0)), ("untrained", null_model)):
        act = frame_features(model, fs.images, layer="features.conv3", pool="max", method=method)
        res[name] = filter_au_correlation(sequence_curves(act, fs.sequences, fs.frames, fs.aus, fs.au_ids))
    print(f"  untrained: {how}")
    print("  group | sequences | trained: best r (filter) | untrained: best r (filter) | "
          "trained specific: r, r_absent (filter) | untrained specific: r, r_absent")
    passed = worse = 0
    for g in GROUPS:
        def best(t, g=g):
            j = max((ids.index(a) for a in g), key=lambda j: t.best_r[j])
            return t.best_r[j], t.best_filter[j], j

        def specific(t, g=g):
            j = max((ids.index(a) for a in g), key=lambda j: t.specific_score[j])
            f = t.specific_filter[j]
            return t.r_median[f, j], t.r_absent[f, j], f

        (rt, ft, _), (ru, fu, _) = best(res["trained"]), best(res["untrained"])
        st, su = specific(res["trained"]), specific(res["untrained"])
        passed += rt >= 0.8
        worse += ru <= rt - 0.1
        n = max(int(res["trained"].n_sequences[ids.index(a)]) for a in g)
        print(f"  {'+'.join(map(str, g)):>5} | {n:>9} | {rt:10.3f} ({ft:>3})        | {ru:10.3f} ({fu:>3})          | "
              f"{st[0]:.3f}, {st[1]:+.3f} ({st[2]:>3})                  | {su[0]:.3f}, {su[1]:+.3f} ({su[2]:>3})")
    print(f"  groups with trained best r >= 0.8: {passed} of {len(GROUPS)}; untrained best r at least 0.1 lower: "
          f"{worse} of {len(GROUPS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
