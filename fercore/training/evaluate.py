"""Scoring a trained run: on another data set (cross-data-set transfer) and the ROC AUC of scores.

A run directory (``cache/runs/<name>-<hash8>/``) is made by :func:`fercore.training.loop.train`;
its layout is described in ``docs/training.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from fercore.data.facs import canonical_emotion
from fercore.store.layout import RunError, is_imported, load_config, trained_folds
from fercore.training.network import load_network
from fercore.util import Progress, write_json

__all__ = ["evaluate_run", "image_overlap", "label_mapping", "roc_auc", "transfer_warnings"]

#: Two data sets whose face geometries (eye and mouth centres, fractions of the side) differ by more
#: than this were cropped differently.
GEOMETRY_TOLERANCE = 0.03


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties averaged); NaN with one class only.

    Parameters
    ----------
    scores : (N,) float
    positive : (N,) bool
    """
    y = np.asarray(positive, dtype=bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(np.asarray(scores, dtype=np.float64))
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ------------------------------------------------------------------------------------------
# Evaluation on another data set

def _thumb_keys(images: np.ndarray) -> np.ndarray:
    """A coarse key per image (16 x 16 area-averaged, 8 grey levels): the same face re-encoded,
    resized or re-imported keeps its key."""
    import cv2

    keys = [cv2.resize(np.asarray(im), (16, 16), interpolation=cv2.INTER_AREA) // 32 for im in images]
    return np.array([k.tobytes() for k in keys], dtype=object)


def image_overlap(train_images: np.ndarray, images: np.ndarray) -> dict:
    """How many of ``images`` are (near-)copies of ``train_images``.

    Returns
    -------
    dict
        ``exact`` (identical pixels, after resizing to a common side), ``near`` (the same coarse
        16 x 16 thumbnail), ``n`` (images checked).
    """
    import cv2

    side = min(train_images.shape[1], images.shape[1])

    def at(imgs):
        return imgs if imgs.shape[1] == side else np.stack(
            [cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in imgs])

    a, b = at(train_images), at(images)
    exact = len(set(x.tobytes() for x in b) & set(x.tobytes() for x in a))
    seen = set(_thumb_keys(a).tolist())
    near = int(sum(k in seen for k in _thumb_keys(b).tolist()))
    return {"exact": int(exact), "near": near, "n": int(len(images))}


def transfer_warnings(train_path: Path, fs) -> list[str]:
    """What makes a score on another data set misleading: faces cropped to another geometry than
    the run's training faces, and images that are (near-)copies of them."""
    from fercore.data.preprocess import face_geometry
    from fercore.store.faceset_h5 import FaceSetFileError, load_faceset

    try:
        train = load_faceset(train_path)
    except (FaceSetFileError, FileNotFoundError):
        return [f"{train_path}: the run's training FaceSet cannot be read; crops and overlap not checked"]
    out = []
    g_train = face_geometry(train.meta, train.landmarks, train.size)
    g_data = face_geometry(fs.meta, fs.landmarks, fs.size)
    if g_train is None or g_data is None:
        out.append("face geometry not known for " + ("the training data" if g_train is None else "this data set")
                   + " (no landmarks): the crops cannot be compared; import both with landmarks")
    elif np.abs(g_train - g_data).max() > GEOMETRY_TOLERANCE:
        fmt = lambda g: ", ".join(f"({x:.2f}, {y:.2f})" for x, y in g)  # noqa: E731
        out.append(f"the faces were cropped differently: eyes and mouth at {fmt(g_data)} here, at {fmt(g_train)} in "
                   "the training data (fractions of the side); import both with the canonical geometry "
                   "(python -m fercore import ... --geometry canonical)")
    ov = image_overlap(train.images, fs.images)
    if ov["near"]:
        out.append(f"{ov['near']} of {ov['n']} images ({100 * ov['near'] / ov['n']:.1f} %) are copies of the run's "
                   f"training images ({ov['exact']} identical): they are scored as if new")
    return out

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
        Score one round's model; None scores every trained round's model. An imported network
        has one model (its ``per_fold`` entry has fold -1).
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
    from fercore.store.faceset_h5 import load_faceset
    from fercore.training.loop import fold_rounds

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    imported = is_imported(cfg)
    if imported:
        folds = [-1]  # one network: its own weights
    else:
        folds = trained_folds(run_dir) if fold is None else [fold]
    if not folds:
        raise RunError(f"{run_dir}: no trained weights to evaluate; finish training first")
    fs = load_faceset(faceset_path)
    data_hash = fs.content_hash()
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
    same = not imported and data_hash == cfg["faceset"].get("content_hash")
    if imported:
        warnings = ["the network was trained elsewhere: fercore cannot check whether these faces were among its "
                    "training images, nor whether they were cropped like its training faces"]
    else:
        warnings = [] if same else transfer_warnings(Path(cfg["faceset"]["path"]), fs)
    usable = (fs.labels >= 0) & (to_run[np.maximum(fs.labels, 0)] >= 0)
    rounds = {r.index: r for r in fold_rounds(fs)} if same else {}
    progress = progress or (lambda done, total, stage: None)
    conf = np.zeros((c_data, c_data), dtype=np.int64)
    per_fold = []
    method = None
    for k, f in enumerate(folds):
        net = load_network(run_dir, None if imported else f)
        method = net.inputs.normalize
        if same:
            idx = rounds[f].test
            idx = idx[usable[idx]]
        else:
            idx = np.flatnonzero(usable)
        with torch.inference_mode():
            logits = torch.cat([net.scores(net.inputs.prepare(fs.images[idx[i:i + 512]]))
                                for i in range(0, len(idx), 512)]) if len(idx) else torch.zeros(0, len(run_classes))
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
        "protocol": (f"{'the imported network' if imported else f'{len(folds)} trained model(s)'} on "
                     f"{Path(faceset_path).name}: {len(fs.class_names)} data classes, "
                     f"{len(mapping['pairs'])} shared with the network; "
                     + ("each round's own subject-independent test fold" if same else
                        "every labelled image of a shared class (no folds)")),
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
        "input": net.inputs.to_dict(),
        "imported": bool(imported),
        "warnings": warnings,
        "path": None,
    }
    if write:
        name = f"eval-{data_hash[:8]}" + ("" if fold is None else f"-fold{fold}") + ".json"
        result["path"] = str(run_dir / name)
        write_json(run_dir / name, result)
    return result
