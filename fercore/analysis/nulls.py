"""Null networks: what the filter-AU analysis finds in a network that learned nothing.

Random filters already respond to contrast at the mouth or the brows, so some of them look
"AU-selective" by chance; the figures of a trained network mean something only next to the same
figures of a null network. :func:`ensure_null` builds one for a run, as a run-like directory inside
it, recorded and analysed on the same data as the run's own records:

``<run_dir>/null/untrained/``
    The same architecture (``config.json`` ``model`` entry) with a fresh random initialisation:
    ``init_seed`` is the run's seed plus :data:`NULL_SEED_OFFSET`, so the null never shares the
    trained network's starting weights. No training step is taken.
``<run_dir>/null/shuffled/``
    The same architecture and training setup trained, for the one round the run's records use,
    on the run's FaceSet with its emotion labels permuted (seeded; AU codes, for a multi-task
    run, permuted with them): it has seen faces and been optimised, but its labels carry no
    information. Costs one training round.
``<run_dir>/null/permuted/``
    The run's own network with its weights destroyed but their scale kept: the entries of every
    parameter tensor are permuted (seeded), each tensor on its own, so every layer keeps its
    weights' distribution and nothing of their arrangement; batch-norm running statistics are
    then estimated again on the recorded data (a permuted network's activations have other
    means and variances). Works for any network, so it is the null of an imported network, whose
    initialisation fercore does not know (:func:`default_null`).

Each holds ``config.json`` (the run's, with ``"null": kind`` and its own ``run_hash``),
``weights/fold{t}.pt`` and, after :func:`ensure_null`, ``records.h5``, so every reader
(:func:`fercore.store.reader.open_run`) opens it like a run; :func:`fercore.analysis.analyze.analyze`
of the run analyses it with the same code as the run and stores the comparison.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from fercore.store.layout import NULL_KINDS, null_dir, resolve_run
from fercore.training.models import ModelSpec, build_model
from fercore.util import Progress, atomic_path, no_progress, stable_hash, write_json

__all__ = ["NULL_KINDS", "NULL_SEED_OFFSET", "PERMUTE_SEED", "SHUFFLE_SEED", "default_null", "ensure_null",
           "permute_weights"]
#: Added to the run's ``ModelSpec.init_seed`` for the null's initialisation.
NULL_SEED_OFFSET = 1_000_003
#: Seed of the label permutation of the ``shuffled`` null.
SHUFFLE_SEED = 20_15
#: Seed of the weight permutations of the ``permuted`` null.
PERMUTE_SEED = 17_05
#: Images the ``permuted`` null's batch-norm statistics are estimated on (at most).
BN_IMAGES = 4096


def default_null(run_dir) -> str:
    """The null a run is compared with by default: ``untrained`` for a network trained here,
    ``permuted`` for an imported one (its initialisation is not known)."""
    from fercore.store.layout import is_imported, load_config

    return "permuted" if is_imported(load_config(run_dir)) else "untrained"


def permute_weights(module: torch.nn.Module, *, seed: int = PERMUTE_SEED) -> None:
    """Permute, in place, the entries of every floating-point parameter and buffer of ``module``
    (each tensor on its own, seeded), except batch-norm running statistics (re-estimated by
    :func:`reestimate_batchnorm`)."""
    stats = {f"{name}.{b}" if name else b for name, m in module.named_modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for b in ("running_mean", "running_var")}
    g = torch.Generator().manual_seed(int(seed))
    state = module.state_dict()
    new = {}
    for key, value in state.items():
        if key in stats or not value.is_floating_point() or value.numel() < 2:
            new[key] = value
            continue
        flat = value.detach().flatten()
        new[key] = flat[torch.randperm(flat.numel(), generator=g).to(flat.device)].view_as(value).clone()
    module.load_state_dict(new)


@torch.no_grad()
def reestimate_batchnorm(module: torch.nn.Module, batches) -> int:
    """Estimate every batch norm's running mean and variance again from ``batches`` (an
    iterable of input tensors): the population statistics over all of them (cumulative average,
    ``momentum=None``); other modules stay in eval mode. Returns the number of batch norms."""
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats]
    if not bns:
        return 0
    was = module.training
    saved = [m.momentum for m in bns]
    module.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for x in batches:
            module(x)
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        module.train(was)
        if not was:
            module.eval()
    return len(bns)


def _make_permuted(run_dir: Path, out: Path, *, fold: int, data: Path) -> None:
    from fercore.store.faceset_h5 import load_faceset
    from fercore.store.layout import load_config
    from fercore.training.network import load_network

    cfg = _null_config(load_config(run_dir), "permuted", fold=fold, data=data)
    weights = out / "weights" / f"fold{max(fold, 0)}.pt"
    old = out / "config.json"
    if weights.exists() and old.exists():
        with contextlib.suppress(OSError, ValueError):
            if json.loads(old.read_text()).get("run_hash") == cfg["run_hash"]:
                return
    net = load_network(run_dir, None if fold < 0 else fold)
    permute_weights(net.module)
    fs = load_faceset(data)
    rows = np.sort(np.random.default_rng(PERMUTE_SEED).permutation(len(fs))[:BN_IMAGES])
    reestimate_batchnorm(net.module, (net.inputs.prepare(fs.images[rows[s:s + 128]])
                                      for s in range(0, len(rows), 128)))
    _save_state(net.module, weights)
    cfg["rounds"] = [max(fold, 0)]
    write_json(out / "config.json", cfg)


def _run_records(run_dir: Path) -> tuple[Path, int, int, list[str]]:
    """(FaceSet path, weights fold, k, layers) of the run's records; FileNotFoundError if none."""
    from fercore.store.reader import open_run

    reader = open_run(run_dir)
    if not reader.has_records:
        raise FileNotFoundError(
            f"{run_dir}: the run has no records yet, so there is nothing to compare a null with; "
            f"run `python -m fercore record --run {run_dir.name}` first"
        )
    h = reader.header
    path = Path(h["faceset_path"])
    if not path.is_absolute():
        path = run_dir / path
    return path, int(h.get("fold", 0)), int(h["k"]), list(h["layers"])


def _null_config(cfg: dict, kind: str, *, fold: int, data: Path) -> dict:
    out = json.loads(json.dumps(cfg))
    spec = dict(out["model"])
    if kind == "untrained":
        spec["init_seed"] = int(spec.get("init_seed", 0)) + NULL_SEED_OFFSET
    out["model"] = spec
    out["null"] = kind
    out["null_of"] = {"run": cfg.get("name", ""), "run_hash": cfg.get("run_hash", ""), "fold": fold, "data": str(data)}
    out["run_hash"] = stable_hash({"null": kind, "of": cfg.get("run_hash", ""), "model": spec, "fold": fold,
                                   **({"seed": PERMUTE_SEED, "data": str(data)} if kind == "permuted" else {})})
    out["name"] = f"{cfg.get('name', 'run')}-null-{kind}"
    out["rounds"] = [fold]
    return out


def _save_state(model: torch.nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)


def _make_untrained(run_dir: Path, out: Path, *, fold: int, data: Path) -> None:
    from fercore.store.layout import load_config

    cfg = _null_config(load_config(run_dir), "untrained", fold=fold, data=data)
    weights = out / "weights" / f"fold{fold}.pt"
    old = out / "config.json"
    if weights.exists() and old.exists():
        with contextlib.suppress(OSError, ValueError):  # unreadable: made again below
            if json.loads(old.read_text()).get("run_hash") == cfg["run_hash"]:
                return
    spec = ModelSpec(**cfg["model"])
    model = build_model(spec)
    _save_state(model, weights)
    write_json(out / "config.json", cfg)


def _make_shuffled(run_dir: Path, out: Path, *, fold: int, data: Path, progress: Progress) -> None:
    from fercore.store.faceset_h5 import load_faceset, save_faceset
    from fercore.store.layout import load_config, run_faceset_path
    from fercore.training.loop import TrainConfig, train

    cfg = load_config(run_dir)
    ncfg = _null_config(cfg, "shuffled", fold=fold, data=data)
    if (out / "metrics.json").exists() and (out / "config.json").exists():
        with contextlib.suppress(OSError, ValueError):
            if json.loads((out / "config.json").read_text()).get("null_hash") == ncfg["run_hash"]:
                return
    fs = load_faceset(run_faceset_path(run_dir))
    perm = np.random.default_rng(SHUFFLE_SEED).permutation(len(fs))
    fs.labels = fs.labels[perm]
    if fs.label_dist is not None:
        fs.label_dist = fs.label_dist[perm]
    fs.targets = {k: v[perm] for k, v in fs.targets.items()}
    # the AU codes move with the labels: a multi-task run's null must not learn AUs from the images
    fs.aus = fs.aus[perm]
    fs.meta = dict(fs.meta, null=f"emotion labels and AU codes permuted together with seed {SHUFFLE_SEED}")
    shuffled_path = out.parent / "shuffled-faceset.h5"
    save_faceset(fs, shuffled_path)
    spec = ModelSpec(**cfg["model"])
    config = dataclasses.replace(TrainConfig.from_dict(cfg["train"]), folds=(fold,))
    work = out.parent / "_train"
    trained = Path(train(shuffled_path, spec, config, root=work, progress=progress))
    tcfg = json.loads((trained / "config.json").read_text())
    tcfg.update(null="shuffled", null_of=ncfg["null_of"], null_hash=ncfg["run_hash"])
    write_json(trained / "config.json", tcfg)
    if out.exists():
        shutil.rmtree(out)
    trained.rename(out)
    shutil.rmtree(work, ignore_errors=True)


def ensure_null(run_dir: str | Path, *, kind: str = "untrained", progress: Progress | None = None) -> Path:
    """Build (or find cached) the null network of a run, recorded on the run's data.

    Parameters
    ----------
    run_dir : path or str
        A recorded run (a directory, or a run name under ``runs_dir()``).
    kind : {"untrained", "shuffled", "permuted"}
        ``untrained``: same architecture, random init with seed ``init_seed + NULL_SEED_OFFSET``;
        ``shuffled``: trained one round on permuted labels; ``permuted``: the run's weights
        permuted within each tensor, batch norm re-estimated on the recorded data (any network;
        the only kind for an imported one). ``"auto"``: :func:`default_null`.
    progress : callable, optional
        ``progress(done, total, stage)`` with stages ``train`` (shuffled only) and ``record``.

    Returns
    -------
    Path
        The null's directory, ``<run_dir>/null/<kind>``, holding ``records.h5`` with the same k,
        layers and data as the run's records.
    """
    from fercore.recording.record import record
    from fercore.store.layout import is_imported, load_config

    progress = progress or no_progress
    run_dir = resolve_run(run_dir)
    if kind == "auto":
        kind = default_null(run_dir)
    out = null_dir(run_dir, kind)
    if is_imported(load_config(run_dir)) and kind != "permuted":
        raise ValueError(f"null {kind!r}: {run_dir.name} is an imported network, whose initialisation and training "
                         "fercore do not know; its null is its own weights permuted (analyze --null permuted, null --kind "
                         "permuted)")
    data, fold, k, layers = _run_records(run_dir)
    if kind == "untrained":
        _make_untrained(run_dir, out, fold=fold, data=data)
    elif kind == "permuted":
        _make_permuted(run_dir, out, fold=fold, data=data)
    else:
        _make_shuffled(run_dir, out, fold=fold, data=data, progress=progress)
    record(out, data=data, k=k, layers=layers, progress=progress)
    return out
