"""Reading trained runs back: listing, configs, metrics, models, and cross-data-set evaluation.

A run directory (``cache/runs/<name>-<hash8>/``) is made by :func:`fercore.train.train`; its
layout is described in ``docs/training.md``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .facs import canonical_emotion
from .models import FERNet, ModelSpec, build_model
from .util import Progress, runs_dir, write_json

__all__ = [
    "RunError",
    "RunInfo",
    "evaluate_run",
    "label_mapping",
    "list_runs",
    "load_config",
    "load_metrics",
    "load_model",
    "run_faceset_path",
    "trained_folds",
]


class RunError(ValueError):
    """A run directory is missing, incomplete or damaged."""


@dataclass(frozen=True)
class RunInfo:
    """One line of :func:`list_runs`.

    Attributes
    ----------
    name : str
        The directory name (``<data>-<arch>-<scheme>-<hash8>``).
    dir : Path
    dataset : str
        Name of the FaceSet file the run trained on (its stem).
    faceset_path : Path
    arch : str
    mean_acc : float or None
        Mean test accuracy over the rounds (None until ``metrics.json`` exists).
    sd_acc : float or None
    complete : bool
        ``metrics.json`` exists and every round has its weights.
    """

    name: str
    dir: Path
    dataset: str
    faceset_path: Path
    arch: str
    mean_acc: float | None
    sd_acc: float | None
    complete: bool


def _read(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: no {what}; {path.parent} is not a (finished) run — train it with "
                       f"`python -m fercore train`") from None
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: damaged {what} ({e}); delete {path.parent} and train again") from None


def load_config(run_dir) -> dict:
    """The run's ``config.json``; RunError if missing or unreadable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist; list runs with `python -m fercore runs` "
                       f"or train one with `python -m fercore train`")
    cfg = _read(run_dir / "config.json", "config.json")
    for key in ("model", "train", "faceset"):
        if key not in cfg:
            raise RunError(f"{run_dir / 'config.json'}: no {key!r} entry; not a fercore training run")
    return cfg


def load_metrics(run_dir) -> dict | None:
    """The run's ``metrics.json``, or None while training has not finished."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return None
    return _read(path, "metrics.json")


def trained_folds(run_dir) -> list[int]:
    """Rounds whose best-validation weights exist (``weights/fold{t}.pt``), ascending."""
    found = []
    for p in (Path(run_dir) / "weights").glob("fold*.pt"):
        m = re.fullmatch(r"fold(\d+)\.pt", p.name)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def run_faceset_path(run_dir) -> Path:
    """The FaceSet file a run was trained on; RunError if it is gone."""
    cfg = load_config(run_dir)
    path = Path(cfg["faceset"]["path"])
    if not path.exists():
        raise RunError(f"{run_dir}: its FaceSet {path} no longer exists; rebuild it (same options give the "
                       f"same file) or train again on another file")
    return path


def load_model(run_dir, fold: int | None = None) -> FERNet:
    """The trained network of one round, in eval mode on the CPU.

    Parameters
    ----------
    run_dir : path
    fold : int, optional
        Which round's best-validation weights; None takes the lowest trained round (fold 0
        when it was trained).

    Returns
    -------
    FERNet
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    folds = trained_folds(run_dir)
    if not folds:
        raise RunError(f"{run_dir}: no weights/fold*.pt yet; finish training with `python -m fercore train`")
    if fold is None:
        fold = folds[0]
    if fold not in folds:
        raise RunError(f"{run_dir}: fold {fold} has no weights; trained folds: {folds}")
    try:
        spec = ModelSpec(**cfg["model"])
    except TypeError as e:
        raise RunError(f"{run_dir / 'config.json'}: model entry does not fit ModelSpec ({e})") from None
    model = build_model(spec)
    path = run_dir / "weights" / f"fold{fold}.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # torch raises many types for a bad file
        raise RunError(f"{path}: unreadable weights ({type(e).__name__}: {e}); delete the run and train again") from None
    return model.eval()


def list_runs(root=None) -> list[RunInfo]:
    """Every run directory with a ``config.json`` under ``root`` (default ``runs_dir()``), by name."""
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if not (d / "config.json").is_file():
            continue
        try:
            cfg = load_config(d)
            metrics = load_metrics(d)
        except RunError:
            continue
        rounds = cfg.get("rounds")
        done = trained_folds(d)
        complete = metrics is not None and (rounds is None or set(rounds) <= set(done))
        out.append(RunInfo(
            name=d.name,
            dir=d,
            dataset=cfg["faceset"].get("name", ""),
            faceset_path=Path(cfg["faceset"].get("path", "")),
            arch=cfg["model"].get("arch", ""),
            mean_acc=None if metrics is None else metrics.get("mean_test_acc"),
            sd_acc=None if metrics is None else metrics.get("sd_test_acc"),
            complete=bool(complete),
        ))
    return out


# ------------------------------------------------------------------------------------------
# Evaluation on another data set

def _canon(name: str) -> str:
    return canonical_emotion(name) or name.strip().lower()


def label_mapping(run_classes, data_classes) -> dict:
    """Match two label sets through canonical emotion names (:func:`fercore.facs.canonical_emotion`).

    Returns
    -------
    dict
        ``pairs``: list of (data index, run index, canonical name); ``data_unmatched`` and
        ``run_unmatched``: class names with no counterpart.
    """
    run_c = [_canon(c) for c in run_classes]
    pairs, data_unmatched = [], []
    for j, c in enumerate(data_classes):
        cj = _canon(c)
        if cj in run_c:
            pairs.append((j, run_c.index(cj), cj))
        else:
            data_unmatched.append(c)
    used = {i for _, i, _ in pairs}
    run_unmatched = [c for i, c in enumerate(run_classes) if i not in used]
    return {"pairs": pairs, "data_unmatched": data_unmatched, "run_unmatched": run_unmatched}


def evaluate_run(run_dir, faceset_path, *, fold: int | None = None, progress: Progress | None = None,
                 write: bool = True) -> dict:
    """Score a trained run on a FaceSet, mapping label sets through canonical emotion names.

    Data classes without a counterpart in the run are reported and their images excluded; run
    classes without a counterpart are reported and never predicted (their logits are ignored).
    When the FaceSet is the one the run trained on, each round's model is scored on its own test
    images (reproducing the run's protocol); otherwise on every labelled image.

    Parameters
    ----------
    run_dir : path
    faceset_path : path
    fold : int, optional
        Score one round's model; None scores every trained round's model.
    progress : callable(done, total, stage), optional
    write : bool
        Write ``eval-<datahash8>.json`` (``eval-<datahash8>-fold<t>.json`` for one fold) into
        the run directory.

    Returns
    -------
    dict
        ``accuracy`` (mean over the models), ``sd``, ``per_fold``, ``confusion`` (data classes,
        rows true, columns predicted, summed over models), ``mapping``, ``excluded``, ``n_images``,
        ``path`` (the JSON written, or None).
    """
    from .store.faceset_h5 import load_faceset
    from .train import fold_rounds, prepare_inputs

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    folds = trained_folds(run_dir) if fold is None else [fold]
    if not folds:
        raise RunError(f"{run_dir}: no trained weights to evaluate; finish training first")
    fs = load_faceset(faceset_path)
    data_hash = fs.meta.get("content_hash") or fs.content_hash()
    run_classes = cfg.get("class_names") or cfg["faceset"]["class_names"]
    mapping = label_mapping(run_classes, fs.class_names)
    if not mapping["pairs"]:
        raise ValueError(
            f"{faceset_path}: none of its classes ({', '.join(fs.class_names)}) matches a class of the run "
            f"({', '.join(run_classes)}) through canonical emotion names; nothing to evaluate"
        )
    c_data = len(fs.class_names)
    to_run = np.full(c_data, -1)
    for j, i, _ in mapping["pairs"]:
        to_run[j] = i
    run_to_data = {i: j for j, i, _ in mapping["pairs"]}
    run_idx = torch.as_tensor(sorted(run_to_data))
    data_of = np.array([run_to_data[i] for i in sorted(run_to_data)])
    same = data_hash == cfg["faceset"].get("content_hash")
    usable = (fs.labels >= 0) & (to_run[np.maximum(fs.labels, 0)] >= 0)
    spec = ModelSpec(**cfg["model"])
    method = cfg.get("normalize", "standardize")
    x = prepare_inputs(fs.images, in_size=spec.in_size, method=method)
    rounds = {r.index: r for r in fold_rounds(fs)} if same else {}
    progress = progress or (lambda done, total, stage: None)
    conf = np.zeros((c_data, c_data), dtype=np.int64)
    per_fold = []
    for k, f in enumerate(folds):
        model = load_model(run_dir, f)
        if same:
            idx = rounds[f].test
            idx = idx[usable[idx]]
        else:
            idx = np.flatnonzero(usable)
        with torch.inference_mode():
            logits = torch.cat([model(x[torch.as_tensor(idx[i:i + 512])]) for i in range(0, len(idx), 512)]) \
                if len(idx) else torch.zeros(0, len(run_classes))
        pred = data_of[logits[:, run_idx].argmax(1).numpy()] if len(idx) else np.zeros(0, int)
        y = fs.labels[idx]
        conf += np.bincount(y * c_data + pred, minlength=c_data * c_data).reshape(c_data, c_data)
        per_fold.append({"fold": f, "accuracy": float((pred == y).mean()) if len(y) else None, "n": int(len(y))})
        progress(k + 1, len(folds), "evaluate")
    accs = np.array([p["accuracy"] for p in per_fold if p["accuracy"] is not None], dtype=float)
    excluded = {c: int((fs.labels == j).sum()) for j, c in enumerate(fs.class_names) if to_run[j] < 0}
    result = {
        "run": run_dir.name,
        "data": {"path": str(Path(faceset_path).resolve()), "content_hash": data_hash,
                 "class_names": list(fs.class_names), "label_set": fs.label_set},
        "same_faceset_as_training": bool(same),
        "images": "each round's own test images" if same else "every labelled image of a mapped class",
        "n_images": int(usable.sum()),
        "accuracy": float(accs.mean()) if len(accs) else None,
        "sd": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
        "per_fold": per_fold,
        "confusion": conf.tolist(),
        "confusion_axes": "rows: true data class, columns: predicted (mapped) data class; data class order",
        "mapping": [{"data_class": fs.class_names[j], "run_class": run_classes[i], "canonical": c}
                    for j, i, c in mapping["pairs"]],
        "excluded_data_classes": excluded,
        "run_classes_not_predicted": mapping["run_unmatched"],
        "normalize": method,
        "path": None,
    }
    if write:
        name = f"eval-{data_hash[:8]}" + ("" if fold is None else f"-fold{fold}") + ".json"
        result["path"] = str(run_dir / name)
        write_json(run_dir / name, result)
    return result
