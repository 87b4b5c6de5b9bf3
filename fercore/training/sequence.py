"""A sequence model over the frames of a clip: frozen CNN features per frame -> LSTM.

Breuer & Kimmel (2017) fed the per-frame features of a trained expression CNN to an LSTM to
classify clips and to find micro-expressions. :func:`train_sequence` does that under the same
subject-independent k-fold protocol as the CNN runs (round t tests fold t, validates on fold
(t + 1) mod k, trains on the rest; the best-validation epoch is scored on test), over whole
sequences:

- ``task="expression"``: the LSTM classifies each sequence's expression (its label is its apex
  frames' label, :func:`fercore.data.sequences.sequence_labels`); the CNN's own accuracy on each
  test sequence's apex frame alone is reported beside it, the baseline the LSTM must match.
- ``task="micro"``: the LSTM detects whether a sequence holds a micro-expression (phase 4 frames)
  and marks which frames do; detection accuracy, per-frame scores and the onset error of the
  detected ones are reported, beside a frame-by-frame CNN baseline (a sequence is "detected" when
  the CNN calls any frame non-neutral).

The CNN is frozen: its weights of one round (``cnn_fold``), or round t's for round t
(``cnn_fold=None``, for a CNN trained on the same subjects as the sequences). Features are cached
per (CNN run, fold, layer, pooling, FaceSet hash) under ``<cnn_run>/sequence/features/``; a
sequence run is cached beside them as ``<cnn_run>/sequence/<name>-<hash8>/`` (``config.json``,
``weights/fold{t}.pt``, ``folds/fold{t}.json``, ``metrics.json``; ``docs/sequences.md``). The same
inputs return the existing run at once. The feature pass uses the cores the process may use; the
LSTM, too small for intra-op threads to pay, trains on one torch thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fercore.data.faceset import PHASE_CODES, FaceSet
from fercore.data.sequences import SequenceIndex, apex_rows, sequence_index, sequence_labels
from fercore.store.faceset_h5 import load_faceset
from fercore.store.layout import RunError, load_config, trained_folds
from fercore.training.evaluate import label_mapping
from fercore.training.inputs import check_method, to_input
from fercore.training.loop import Round, configure_threads, fold_rounds
from fercore.training.models import FERNet, conv_layers, forward_features, load_model
from fercore.util import Progress, atomic_path, no_progress, stable_hash, write_json

__all__ = [
    "HEADS",
    "POOLS",
    "SEQUENCE_TRAINER_VERSION",
    "TASKS",
    "LSTMSpec",
    "SequenceConfig",
    "SequenceNet",
    "cached_features",
    "cnn_rest",
    "frame_features",
    "load_sequence_model",
    "resolve_config",
    "sequence_dir_for",
    "sequence_rounds",
    "train_sequence",
]

#: Bumped when a change to this trainer changes results, so cached sequence runs are not reused.
SEQUENCE_TRAINER_VERSION = 1
#: Bumped when the features computed for a layer change.
FEATURE_VERSION = 1
TASKS = ("auto", "expression", "micro")
#: What reads the sequence: ``cnn`` is the CNN's own layers after ``layer`` (frozen) applied to
#: the last frame's features plus a learned LSTM correction (zero at the start, so the untrained
#: model is the CNN on the last frame); ``linear`` a new linear layer on the LSTM's final states.
HEADS = ("auto", "cnn", "linear")
#: How a 4-D layer output (B, C, h, w) becomes a frame's feature vector: ``max`` takes each
#: channel's spatial maximum (the records' per-image maximum), ``flatten`` keeps every unit.
POOLS = ("max", "flatten")
MICRO = PHASE_CODES["micro"]
#: The feature layer of ``layer="auto"`` per task: the FC-300 layer for expressions (read by the
#: CNN's own last layer), the quadrant-pooled conv3 maps for the subtler micro-expressions.
DEFAULT_LAYERS = {"expression": "classifier.relu4", "micro": "features"}


@dataclass(frozen=True)
class LSTMSpec:
    """The sequence network; saved in the sequence run's ``config.json``.

    Attributes
    ----------
    hidden : int
        LSTM hidden units (per direction).
    layers : int
        Stacked LSTM layers.
    bidirectional : bool
        Run the LSTM both ways (the sequence is read from its final states, the frame head from
        every step's output).
    dropout : float
        Dropout on the standardised input features (and between stacked layers).
    center : bool or None
        Subtract from each frame's features their median over the sequence's frames before the
        LSTM: what stays is how a frame differs from the sequence's own baseline (identity, light,
        pose cancel), which is what a brief micro-expression is. None (default): on for the micro
        task, off for expressions (:func:`resolve_config`; measured in ``docs/sequences.md``).
    """

    hidden: int = 64
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.1
    center: bool | None = None

    def __post_init__(self):
        if not isinstance(self.hidden, int) or self.hidden < 1:
            raise ValueError(f"LSTMSpec.hidden: expected a positive integer, got {self.hidden!r}")
        if not isinstance(self.layers, int) or self.layers < 1:
            raise ValueError(f"LSTMSpec.layers: expected a positive integer, got {self.layers!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"LSTMSpec.dropout: expected a probability 0 <= p < 1, got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SequenceConfig:
    """What the LSTM reads and how it is trained; saved in ``config.json`` and hashed into the
    sequence run's name.

    Attributes
    ----------
    layer : str
        ``auto`` (default): ``classifier.relu4`` for the expression task, ``features`` for
        micro-expressions. Else the CNN layer whose output is a frame's features: a dotted name of ``model.features``
        (``features.conv3``; 4-D outputs are pooled by ``pool``), ``"features"`` for the flattened
        output of ``model.features`` (the zero-bias CNN's quadrant-pooled conv3), or a layer of
        the classifier (``classifier.relu4``: the zero-bias CNN's FC-300 layer after its ReLU).
    pool : {"max", "flatten"}
        See :data:`POOLS`; only for 4-D outputs.
    cnn_fold : int or None
        The CNN round whose weights make the features (default 0); None uses round t's weights
        for round t (matched folds: for a CNN trained on these subjects).
    task : {"auto", "expression", "micro"}
        ``auto``: ``micro`` when the FaceSet has micro-expression frames (phase 4), else
        ``expression``.
    head : {"auto", "cnn", "linear"}
        See :data:`HEADS`. ``auto``: ``cnn`` for the expression task when ``layer`` is
        ``features`` or a classifier layer and every class of the data has a counterpart among
        the CNN's classes; ``linear`` otherwise (always for micro-expressions).
    epochs, batch_size, lr, weight_decay : float
        Adam on the LSTM, gradient norm clipped at 1.
    frame_weight : float
        Weight of the per-frame micro-expression loss beside the sequence loss (task micro).
    folds : tuple of int or None
        Rounds to run (None: all).
    seed : int
        Seed of the LSTM's initialisation, shuffling and dropout.
    """

    layer: str = "auto"
    pool: str = "max"
    cnn_fold: int | None = 0
    task: str = "auto"
    head: str = "auto"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    frame_weight: float = 1.0
    folds: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self):
        if self.folds is not None:
            object.__setattr__(self, "folds", tuple(sorted({int(f) for f in self.folds})))
        if self.pool not in POOLS:
            raise ValueError(f"SequenceConfig.pool: expected one of {', '.join(POOLS)}, got {self.pool!r}")
        if self.task not in TASKS:
            raise ValueError(f"SequenceConfig.task: expected one of {', '.join(TASKS)}, got {self.task!r}")
        if self.head not in HEADS:
            raise ValueError(f"SequenceConfig.head: expected one of {', '.join(HEADS)}, got {self.head!r}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"SequenceConfig.{name}: expected a positive integer, got {v!r}")
        if self.cnn_fold is not None and (not isinstance(self.cnn_fold, int) or self.cnn_fold < 0):
            raise ValueError(f"SequenceConfig.cnn_fold: expected a round index >= 0 or None (matched), got {self.cnn_fold!r}")
        if not self.lr > 0:
            raise ValueError(f"SequenceConfig.lr: expected a positive learning rate, got {self.lr!r}")
        if self.weight_decay < 0 or self.frame_weight < 0:
            raise ValueError("SequenceConfig.weight_decay and frame_weight: expected values >= 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["folds"] = None if self.folds is None else list(self.folds)
        return d


# ------------------------------------------------------------------------------------------
# Per-frame features of a frozen CNN

def _layer_names(model: FERNet) -> list[str]:
    return (["features"] + [f"features.{n}" for n, _ in model.features.named_children()]
            + [f"classifier.{n}" for n, _ in model.classifier.named_children()])


def _check_layer(model: FERNet, layer: str) -> str:
    names = _layer_names(model)
    if layer not in names:
        raise ValueError(f"layer {layer!r}: expected 'features' (the flattened output of model.features), a layer of "
                         f"model.features or of the classifier: {', '.join(names)} (conv layers: "
                         f"{', '.join(conv_layers(model))})")
    return layer


@torch.no_grad()
def frame_features(model: FERNet, images: np.ndarray, *, layer: str = "features", pool: str = "max",
                   method: str, batch_size: int = 256, progress: Progress | None = None) -> np.ndarray:
    """The frozen CNN's features of every frame.

    Parameters
    ----------
    model : FERNet
        Put in eval mode for the pass (its ``training`` flag is restored).
    images : (N, H, W) uint8
        Stored faces; resized and normalised as in training (:func:`fercore.training.inputs.to_input`).
    layer : str
        See :attr:`SequenceConfig.layer`.
    pool : {"max", "flatten"}
        For 4-D outputs: each channel's spatial maximum (as the records' ``max_act``), or every unit.
    method : str
        The CNN run's pixel normalisation (its ``config.json`` ``normalize``).
    batch_size : int
    progress : callable, optional
        ``progress(done, total, "features")``.

    Returns
    -------
    (N, F) float32
    """
    _check_layer(model, layer)
    check_method(method)
    if pool not in POOLS:
        raise ValueError(f"pool: expected one of {', '.join(POOLS)}, got {pool!r}")
    progress = progress or no_progress
    was = model.training
    model.eval()
    n = len(images)
    out = []
    try:
        for s in range(0, n, batch_size):
            x = to_input(images[s:s + batch_size], in_size=model.spec.in_size, method=method)
            if layer == "features" or layer.startswith("classifier."):
                h = torch.flatten(forward_features(model, x), 1)
                if layer != "features":
                    for name, m in model.classifier.named_children():
                        h = m(h)
                        if f"classifier.{name}" == layer:
                            break
            else:
                h = forward_features(model, x, until=layer)
                if h.ndim == 4:
                    h = h.amax(dim=(2, 3)) if pool == "max" else torch.flatten(h, 1)
            out.append(h.to(torch.float32).cpu().numpy())
            progress(min(s + batch_size, n), n, "features")
    finally:
        model.train(was)
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out).astype(np.float32)


def _cnn_identity(run_dir: Path) -> dict:
    cfg = load_config(run_dir)
    if cfg.get("kind") == "imported":
        raise ValueError(f"{run_dir.name}: an imported network; the CNN + LSTM reads the per-frame features of a "
                         "network trained here (python -m fercore train); the imported network's frames can be "
                         "recorded (record --data SEQUENCES.h5) and browsed in the Sequences view")
    return {"run_hash": cfg.get("run_hash"), "null": cfg.get("null"), "name": run_dir.name,
            "normalize": cfg.get("normalize", "standardize"), "class_names": cfg.get("class_names")}


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(arr), allow_pickle=False)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.")[:40] or "data"


def cached_features(cnn_run, fold: int, fs: FaceSet, *, layer: str = "features", pool: str = "max",
                    logits: bool = False, progress: Progress | None = None) -> np.ndarray:
    """Per-frame features (or class logits) of a CNN run's round ``fold`` on ``fs``, cached.

    The file is ``<cnn_run>/sequence/features/<layer>-<pool>-fold<t>-<hash8>.npy`` (logits:
    ``logits-fold<t>-<hash8>.npy``), the hash taken over the CNN run's hash, the round, the layer,
    the pooling and the FaceSet's content hash; it is computed once and read back afterwards.

    Returns
    -------
    (N, F) float32
        Features; with ``logits=True`` the (N, C_run) class logits of the CNN.
    """
    run_dir = Path(cnn_run)
    ident = _cnn_identity(run_dir)
    what = "logits" if logits else f"{layer}/{pool}"
    key = stable_hash({"cnn": ident["run_hash"], "null": ident["null"], "fold": int(fold), "what": what,
                       "faceset": fs.content_hash(), "version": FEATURE_VERSION})
    stem = f"logits-fold{fold}" if logits else f"{_slug(layer)}-{pool}-fold{fold}"
    path = run_dir / "sequence" / "features" / f"{stem}-{key[:8]}.npy"
    if path.exists():
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.ndim == 2 and len(arr) == len(fs):
                return arr
        except (OSError, ValueError):
            pass  # damaged: recompute below
    model = load_model(run_dir, fold)
    method = ident["normalize"]
    if logits:
        with torch.no_grad():
            arr = np.concatenate([model(to_input(fs.images[s:s + 256], in_size=model.spec.in_size, method=method)).numpy()
                                  for s in range(0, len(fs), 256)]).astype(np.float32)
    else:
        arr = frame_features(model, fs.images, layer=layer, pool=pool, method=method, progress=progress)
    _save_npy(path, arr)
    return arr


# ------------------------------------------------------------------------------------------
# The LSTM

class SequenceNet(nn.Module):
    """Standardised per-frame features -> LSTM -> a sequence head (and a per-frame head).

    ``forward(x, lengths)`` with ``x`` (B, T, F) float32 (padded after each sequence's end) and
    ``lengths`` (B,) int64 returns the sequence logits (B, C) and the per-frame logits (B, T)
    (zeros without a frame head). The feature mean and standard deviation of the training frames
    are buffers, so the saved weights hold everything the model needs.

    With ``cnn_head`` (the CNN's layers after the feature layer, frozen) and ``class_index`` (C,)
    (the CNN output of each class), the sequence logits are
    ``cnn_head(x_last + back(lstm_out_last))[:, class_index]``: the CNN's own reading of the
    last frame's features, corrected by the LSTM through ``back``, a linear map that starts at
    zero. Otherwise a linear layer reads the LSTM's final states (both directions) beside the
    maximum over time of its outputs (a brief event anywhere in the sequence reaches the head).
    """

    def __init__(self, n_features: int, n_classes: int, spec: LSTMSpec, *, frame_head: bool,
                 cnn_head: nn.Module | None = None, class_index=None):
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.drop = nn.Dropout(spec.dropout)
        self.lstm = nn.LSTM(n_features, spec.hidden, num_layers=spec.layers, batch_first=True,
                            bidirectional=spec.bidirectional, dropout=spec.dropout if spec.layers > 1 else 0.0)
        width = spec.hidden * (2 if spec.bidirectional else 1)
        self.frame_head = nn.Linear(width, 1) if frame_head else None
        self.cnn_head = cnn_head
        if cnn_head is None:
            self.seq_head = nn.Linear(2 * width, n_classes)
        else:
            if class_index is None or len(class_index) != n_classes:
                raise ValueError(f"class_index: expected the CNN output index of each of the {n_classes} classes")
            self.seq_head = None
            self.back = nn.Linear(width, n_features)
            nn.init.zeros_(self.back.weight)
            nn.init.zeros_(self.back.bias)
            self.register_buffer("class_index", torch.as_tensor(list(class_index), dtype=torch.int64))
            for p in cnn_head.parameters():
                p.requires_grad_(False)
            cnn_head.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cnn_head is not None:
            self.cnn_head.eval()  # the CNN's layers keep their inference behaviour (no dropout)
        return self

    def centred(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, F) the LSTM's input before standardisation: ``x`` less each sequence's median
        frame (over its ``lengths`` frames) when ``spec.center``."""
        if not self.spec.center:
            return x
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, T)
        med = torch.where(valid[:, :, None], x, torch.full_like(x, float("nan"))).nanmedian(dim=1, keepdim=True).values
        return x - med

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.drop((self.centred(x, lengths) - self.mean) / self.std)  # (B, T, F)
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, W)
        if self.cnn_head is None:
            dirs = 2 if self.spec.bidirectional else 1
            last = h_n.view(self.spec.layers, dirs, x.shape[0], self.spec.hidden)[-1]  # (dirs, B, H)
            valid = torch.arange(x.shape[1])[None, :, None] < lengths[:, None, None]
            peak = torch.where(valid, out, torch.full_like(out, -1e4)).amax(dim=1)  # (B, W)
            seq = self.seq_head(torch.cat([*last, peak], dim=1))  # (B, C)
        else:
            b = torch.arange(x.shape[0])
            t = lengths.to(torch.int64) - 1
            seq = self.cnn_head(x[b, t] + self.back(out[b, t]))[:, self.class_index]  # (B, C)
        frame = self.frame_head(out).squeeze(-1) if self.frame_head is not None else x.new_zeros(x.shape[:2])
        return seq, frame


def cnn_rest(model: FERNet, layer: str) -> nn.Module | None:
    """The CNN's layers after ``layer`` (a copy): the whole classifier after ``features``, the
    classifier's later layers after one of its own; None for a layer inside ``features``."""
    import copy

    _check_layer(model, layer)
    if layer == "features":
        return copy.deepcopy(model.classifier)
    if not layer.startswith("classifier."):
        return None
    names = [n for n, _ in model.classifier.named_children()]
    rest = list(model.classifier.children())[names.index(layer.split(".", 1)[1]) + 1:]
    return copy.deepcopy(nn.Sequential(*rest))


# ------------------------------------------------------------------------------------------
# Rounds over whole sequences

def sequence_rounds(fs: FaceSet, index: SequenceIndex, seq_labels: np.ndarray, *, folds=None) -> list[Round]:
    """The protocol's rounds over sequences: :func:`fercore.training.loop.fold_rounds` applied to
    one row per sequence (its subject, fold or split columns, which every frame of a sequence must
    share), so round t tests the sequences of fold t, validates on fold (t + 1) mod k and trains on
    the rest. Indices are sequence indices (into ``index``); unlabelled sequences are left out of
    validation and test.
    """
    view = FaceSet(
        images=np.zeros((len(index), 1, 1), np.uint8),
        labels=np.asarray(seq_labels, dtype=np.int64),
        class_names=tuple(f"c{i}" for i in range(max(1, int(np.max(seq_labels, initial=0)) + 1))),
        aus=np.zeros((len(index), 0), np.float32), au_ids=np.zeros(0, np.int64),
        subjects=index.per_sequence(fs.subjects),
        folds=index.per_sequence(fs.folds),
        splits=None if fs.splits is None else np.stack(
            [index.per_sequence(fs.splits[:, r]) for r in range(fs.splits.shape[1])], axis=1),
    )
    return fold_rounds(view, folds=folds)


# ------------------------------------------------------------------------------------------
# Training

def _resolve_task(fs: FaceSet, task: str) -> str:
    has_micro = fs.phases is not None and bool((fs.phases == MICRO).any())
    if task == "auto":
        return "micro" if has_micro else "expression"
    if task == "micro" and not has_micro:
        raise ValueError("task 'micro': the FaceSet has no micro-expression frames (phase 4); generate "
                         "micro-expression sequences (`python -m fercore phantom-seq --micro`) or use task 'expression'")
    return task


def resolve_config(fs: FaceSet, spec: LSTMSpec, config: SequenceConfig) -> tuple[str, LSTMSpec, SequenceConfig]:
    """The task a config means on ``fs``, with the per-task defaults filled in: ``layer="auto"``
    (:data:`DEFAULT_LAYERS`) and ``center=None`` (on for micro-expressions). The resolved spec and
    config are the ones hashed and recorded."""
    task = _resolve_task(fs, config.task)
    if config.layer == "auto":
        config = dataclasses.replace(config, layer=DEFAULT_LAYERS[task])
    if spec.center is None:
        spec = dataclasses.replace(spec, center=task == "micro")
    return task, spec, config


def _run_hash(cnn: dict, fs_hash: str, spec: LSTMSpec, config: SequenceConfig) -> str:
    return stable_hash({"cnn": cnn["run_hash"], "null": cnn["null"], "faceset": fs_hash, "lstm": spec.to_dict(),
                        "train": config.to_dict(), "version": SEQUENCE_TRAINER_VERSION})


def sequence_dir_for(cnn_run, faceset_path, fs_hash: str, spec: LSTMSpec, config: SequenceConfig, task: str) -> Path:
    """``<cnn_run>/sequence/<data>-<task>-<hash8>/``: where :func:`train_sequence` puts a run."""
    cnn = _cnn_identity(Path(cnn_run))
    digest = _run_hash(cnn, fs_hash, spec, config)
    return Path(cnn_run) / "sequence" / f"{_slug(Path(faceset_path).stem)}-{task}-{digest[:8]}"


def _seed(*parts: int) -> int:
    return int(stable_hash(list(parts))[:15], 16)


def _cnn_train_subjects(cnn_dir: Path, fold: int) -> set[str] | None:
    """Subjects the CNN's round ``fold`` was trained or validated on (empty for an untrained null;
    None when its FaceSet is gone)."""
    cfg = load_config(cnn_dir)
    if cfg.get("null") == "untrained":
        return set()
    try:
        cnn_fs = load_faceset(cfg["faceset"]["path"])
        (rnd,) = fold_rounds(cnn_fs, folds=[fold])
    except (OSError, ValueError, KeyError):
        return None
    return set(cnn_fs.subjects[rnd.train].tolist()) | set(cnn_fs.subjects[rnd.valid].tolist())


def _cnn_baseline(logits: np.ndarray, cnn_classes, data_classes) -> tuple[np.ndarray, dict]:
    """(N,) int64 predicted data class per frame (-1 where no run class maps) and the mapping."""
    m = label_mapping(cnn_classes, data_classes)
    if not m["pairs"]:
        return np.full(len(logits), -1, np.int64), m
    data_idx = np.array([j for j, _, _ in m["pairs"]])
    run_idx = np.array([i for _, i, _ in m["pairs"]])
    return data_idx[logits[:, run_idx].argmax(axis=1)], m


def _micro_scores(p_frame: np.ndarray, truth: np.ndarray, lengths: np.ndarray, detected: np.ndarray,
                  is_micro: np.ndarray) -> dict:
    """Frame-level F1 and onset errors of the detected micro-expression sequences."""
    mask = np.arange(truth.shape[1])[None, :] < lengths[:, None]
    pred = (p_frame > 0.5) & mask
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth & mask).sum())
    fn = int((~pred & truth).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
    errors = []
    for s in np.flatnonzero(detected & is_micro):
        true_on = int(np.flatnonzero(truth[s])[0])
        hits = np.flatnonzero(pred[s])
        pred_on = int(hits[0]) if len(hits) else int(np.argmax(np.where(mask[s], p_frame[s], -1.0)))
        errors.append(pred_on - true_on)
    errors = np.array(errors, dtype=np.int64)
    return {
        "frame_f1": float(f1),
        "frame_acc": float(((pred == truth) & mask).sum() / mask.sum()),
        "onset_errors": errors.tolist(),
        "onset_within_2": float((np.abs(errors) <= 2).mean()) if len(errors) else None,
        "onset_median_abs": float(np.median(np.abs(errors))) if len(errors) else None,
        "n_detected_micro": int(len(errors)),
    }


def _evaluate(model: SequenceNet, x: torch.Tensor, lengths: torch.Tensor, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, C) sequence probabilities and (n, T) frame probabilities of sequences ``idx``."""
    was = model.training
    model.eval()
    with torch.no_grad():
        ii = torch.as_tensor(idx)
        seq, frame = model(x[ii], lengths[ii])
    model.train(was)
    return torch.softmax(seq, 1).numpy(), torch.sigmoid(frame).numpy()


def _train_round(rnd: Round, x: torch.Tensor, lengths: torch.Tensor, y: np.ndarray, frame_y: np.ndarray | None,
                 n_classes: int, make_model, config: SequenceConfig, out_dir: Path, tick) -> tuple[dict, SequenceNet]:
    """Train one round; the model of the best validation score (the untrained start, epoch 0,
    included) is saved and scored on the round's test sequences."""
    t0, c0 = time.perf_counter(), time.process_time()
    train = rnd.train[y[rnd.train] >= 0]
    if len(train) == 0 or len(rnd.valid) == 0 or len(rnd.test) == 0:
        raise ValueError(f"round {rnd.index}: {len(train)} training, {len(rnd.valid)} validation and {len(rnd.test)} "
                         "test sequences; every part needs at least one labelled sequence (check the folds)")
    torch.manual_seed(_seed(config.seed, rnd.index))
    model = make_model()
    tr = torch.as_tensor(train)
    valid_frames = (torch.arange(x.shape[1])[None, :] < lengths[tr][:, None])  # (n, T)
    feats = model.centred(x[tr], lengths[tr])[valid_frames]  # (frames, F)
    model.mean.copy_(feats.mean(0))
    model.std.copy_(feats.std(0).clamp_min(1e-4))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    yt = torch.as_tensor(y)
    ft = None if frame_y is None else torch.as_tensor(frame_y, dtype=torch.float32)

    def validate() -> tuple[float, float]:
        p_seq, p_frame = _evaluate(model, x, lengths, rnd.valid)
        acc = float((p_seq.argmax(1) == y[rnd.valid]).mean())
        if frame_y is None:
            return acc, acc
        truth = frame_y[rnd.valid] > 0.5  # micro: detection and localisation both count
        f1 = _micro_scores(p_frame, truth, lengths[rnd.valid].numpy(), p_seq.argmax(1) == 1, y[rnd.valid] == 1)["frame_f1"]
        return acc, acc + f1

    val_acc, score = validate()
    best = {"score": score, "epoch": 0, "state": {k: v.clone() for k, v in model.state_dict().items()}}
    curves = {"train_loss": [], "val_acc": [val_acc], "val_score": [score]}
    for epoch in range(config.epochs):
        g = torch.Generator().manual_seed(_seed(config.seed, rnd.index, epoch))
        torch.manual_seed(_seed(config.seed, rnd.index, epoch, 1))  # dropout
        perm = tr[torch.randperm(len(tr), generator=g)]
        model.train()
        loss_sum = 0.0
        for b in range(0, len(perm), config.batch_size):
            ib = perm[b:b + config.batch_size]
            seq, frame = model(x[ib], lengths[ib])
            loss = F.cross_entropy(seq, yt[ib])
            if ft is not None:
                m = (torch.arange(x.shape[1])[None, :] < lengths[ib][:, None]).float()
                per = F.binary_cross_entropy_with_logits(frame, ft[ib], reduction="none")
                loss = loss + config.frame_weight * (per * m).sum() / m.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            loss_sum += float(loss.detach()) * len(ib)
        val_acc, score = validate()
        curves["train_loss"].append(loss_sum / len(tr))
        curves["val_acc"].append(val_acc)
        curves["val_score"].append(score)
        if score > best["score"]:
            best = {"score": score, "epoch": epoch + 1, "state": {k: v.clone() for k, v in model.state_dict().items()}}
        tick(1)
    model.load_state_dict(best["state"])
    model.eval()
    with atomic_path(out_dir / "weights" / f"fold{rnd.index}.pt") as tmp:
        torch.save(best["state"], tmp)
    p_seq, p_frame = _evaluate(model, x, lengths, rnd.test)
    pred = p_seq.argmax(1)
    yte = y[rnd.test]
    result = {
        "fold": rnd.index,
        "test_acc": float((pred == yte).mean()),
        "best_val_acc": curves["val_acc"][best["epoch"]],
        "best_val_score": best["score"],
        "best_epoch": best["epoch"],
        "n_train": int(len(train)), "n_valid": int(len(rnd.valid)), "n_test": int(len(rnd.test)),
        "confusion": np.bincount(yte * n_classes + pred, minlength=n_classes ** 2).reshape(n_classes, n_classes).tolist(),
        "curves": curves,
        "test_pred": pred.tolist(),
    }
    if frame_y is not None:
        result.update(_micro_scores(p_frame, frame_y[rnd.test] > 0.5, lengths[rnd.test].numpy(), pred == 1, yte == 1))
    result["wall_s"] = time.perf_counter() - t0
    result["cpu_s"] = time.process_time() - c0
    return result, model


def _protocol(fs: FaceSet, index: SequenceIndex, rounds: list[Round], task: str, class_names, subjects_s: np.ndarray,
              cnn_dir: Path, config: SequenceConfig, spec: LSTMSpec, n_features: int, name: str,
              cnn_seen: list[int | None]) -> dict:
    independent = all(not (set(subjects_s[r.test]) & (set(subjects_s[r.train]) | set(subjects_s[r.valid])))
                      for r in rounds)
    k = int(index.per_sequence(fs.folds).max(initial=-1) + 1) if fs.splits is None else None
    folds = (f"{k} folds over whole sequences (test fold t, validation fold (t+1) mod {k}, the other {k - 2} train)"
             if k is not None else f"{fs.splits.shape[1]} predefined train/valid/test split(s) over whole sequences")
    cnn_fold = "round t's weights for round t (matched folds)" if config.cnn_fold is None else f"round {config.cnn_fold}'s weights"
    if any(v is None for v in cnn_seen):
        seen = "whether the CNN saw these subjects is unknown (its FaceSet is gone)"
    elif sum(cnn_seen):
        seen = (f"NOT independent of the CNN: {sum(cnn_seen)} test subject(s) over the rounds were among the CNN's "
                "training subjects (use cnn_fold=None with a CNN trained on the same folds)")
    else:
        seen = "no test subject was among the CNN's training or validation subjects"
    lo, hi = int(index.lengths.min()), int(index.lengths.max())
    layer = config.layer + (f" ({'spatial max per channel' if config.pool == 'max' else 'every unit'})"
                            if config.layer.startswith("features.") else "")
    target = ("the sequence's expression (the label of its apex frames)" if task == "expression" else
              "micro-expression present or not (any phase-4 frame), and which frames are micro-expression frames")
    d = {
        "data_set": name,
        "source": fs.meta.get("source"),
        "task": task,
        "n_sequences": len(index),
        "n_frames": len(fs),
        "frames_per_sequence": [lo, hi],
        "frames": "every frame of each sequence, in frame order",
        "classes": list(class_names),
        "n_classes": len(class_names),
        "target": target,
        "folds": folds,
        "rounds_run": [r.index for r in rounds],
        "subject_independent": bool(independent),
        "cnn": f"{cnn_dir.name}, frozen, {cnn_fold}; {seen}",
        "features": f"{layer}, {n_features} values per frame",
        "model": (f"LSTM ({spec.hidden} hidden, {spec.layers} layer(s), "
                  f"{'bidirectional' if spec.bidirectional else 'forward'}, dropout {spec.dropout:g})"),
        "epochs": config.epochs,
        "best_checkpoint": "the epoch with the best validation score is scored on test"
                           + (" (detection accuracy + frame F1)" if task == "micro" else " (sequence accuracy)"),
    }
    d["text"] = (f"{name}: {len(index)} sequences of {lo}-{hi} frames ({len(fs)} frames), "
                 f"{'micro-expression detection' if task == 'micro' else f'{len(class_names)} classes'}; {folds}; "
                 f"{'subject-independent' if independent else 'NOT subject-independent'}; frames: {d['frames']}; "
                 f"target: {target}; features: {d['features']} of {d['cnn']}; model {d['model']}; {config.epochs} epochs")
    return d


def train_sequence(cnn_run, faceset_path, *, spec: LSTMSpec | None = None, config: SequenceConfig | None = None,
                   progress: Progress | None = None) -> Path:
    """Train (or find cached) an LSTM over the frozen CNN's per-frame features of a sequence FaceSet.

    Parameters
    ----------
    cnn_run : path
        A trained CNN run directory (``weights/fold{t}.pt``), or one of its null networks.
    faceset_path : path
        A FaceSet file with ``sequences`` (and ``frames``, ``phases`` where known), e.g.
        ``python -m fercore phantom-seq`` or a CK+ import with ``frames="all"``.
    spec : LSTMSpec, optional
    config : SequenceConfig, optional
    progress : callable, optional
        ``progress(done, total, stage)``: ``features`` while features are computed (not on a
        cache hit), then ``sequence`` per epoch (total epochs x rounds).

    Returns
    -------
    Path
        ``<cnn_run>/sequence/<data>-<task>-<hash8>/`` holding ``config.json``,
        ``weights/fold{t}.pt``, ``folds/fold{t}.json`` and ``metrics.json`` (written last).
    """
    spec = spec or LSTMSpec()
    config = config or SequenceConfig()
    progress = progress or no_progress
    cnn_dir = Path(cnn_run)
    cnn = _cnn_identity(cnn_dir)
    faceset_path = Path(faceset_path)
    fs = load_faceset(faceset_path)
    task, spec, config = resolve_config(fs, spec, config)
    index = sequence_index(fs.sequences, fs.frames)
    fs_hash = fs.content_hash()
    out = sequence_dir_for(cnn_dir, faceset_path, fs_hash, spec, config, task)
    run_hash = _run_hash(cnn, fs_hash, spec, config)
    if (out / "metrics.json").exists():
        try:
            if json.loads((out / "config.json").read_text()).get("run_hash") == run_hash:
                return out
        except (OSError, ValueError):
            pass  # damaged: train again below
    folds_have = trained_folds(cnn_dir)
    if not folds_have:
        raise RunError(f"{cnn_dir}: no trained weights; train the CNN first (`python -m fercore train`)")

    if task == "expression":
        y = sequence_labels(index, fs.labels, fs.phases)
        class_names = list(fs.class_names)
        frame_y = None
    else:
        micro = (fs.phases == MICRO)
        frame_y = np.where(index.mask, micro[np.maximum(index.rows, 0)], False).astype(np.float32)  # (S, T)
        y = (frame_y.max(axis=1) > 0).astype(np.int64)
        class_names = ["none", "micro"]
    rounds = sequence_rounds(fs, index, y, folds=config.folds)
    probe = load_model(cnn_dir, folds_have[0])
    _check_layer(probe, config.layer)
    head, class_index = _resolve_head(probe, config, task, fs.class_names, cnn["class_names"] or [])
    need = sorted({config.cnn_fold} if config.cnn_fold is not None else {r.index for r in rounds})
    missing = [f for f in need if f not in folds_have]
    if missing:
        raise ValueError(f"cnn_fold: the CNN run {cnn_dir.name} has no weights for round(s) {missing} "
                         f"(trained rounds: {folds_have}); choose one of them or train those rounds")

    configure_threads()  # the feature pass (convolutions) uses the cores this process may use
    t_feat = time.perf_counter()
    feats = {f: cached_features(cnn_dir, f, fs, layer=config.layer, pool=config.pool, progress=progress) for f in need}
    logits = {f: cached_features(cnn_dir, f, fs, logits=True) for f in need}
    feature_s = time.perf_counter() - t_feat

    config_doc = {
        "run_hash": run_hash, "name": out.name, "kind": "sequence", "task": task,
        "cnn_run": {"dir": str(cnn_dir.resolve()), "name": cnn_dir.name, "run_hash": cnn["run_hash"],
                    "null": cnn["null"], "folds": need},
        "layer": config.layer, "pool": config.pool, "head": head, "class_index": class_index,
        "faceset": {"path": str(faceset_path.resolve()), "name": faceset_path.stem, "content_hash": fs_hash,
                    "n_images": len(fs), "n_sequences": len(index), "class_names": list(fs.class_names),
                    "source": fs.meta.get("source")},
        "class_names": class_names,
        "lstm": spec.to_dict(), "train": config.to_dict(),
        "n_features": int(next(iter(feats.values())).shape[1]),
        "trainer_version": SEQUENCE_TRAINER_VERSION,
    }
    write_json(out / "config.json", config_doc)

    def padded(arr: np.ndarray) -> torch.Tensor:
        x = arr[np.maximum(index.rows, 0)]  # (S, T, F)
        x[~index.mask] = 0.0
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    lengths = torch.as_tensor(index.lengths)
    subjects_s = index.per_sequence(fs.subjects)
    apex = apex_rows(index, fs.labels, fs.phases)
    neutral = [c.lower() for c in fs.class_names].index("neutral") if "neutral" in [c.lower() for c in fs.class_names] else None
    total = config.epochs * len(rounds)
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        progress(done, total, "sequence")

    results, cnn_seen = [], []
    # The LSTM is far too small for intra-op threads to pay: with two threads on a loaded 2-core
    # machine a round took 7x the CPU time of one thread (64 s against 9 s). It trains on one.
    with _one_thread():
        for rnd in rounds:
            f = rnd.index if config.cnn_fold is None else config.cnn_fold
            seen = _cnn_train_subjects(cnn_dir, f)
            cnn_seen.append(None if seen is None else len(set(subjects_s[rnd.test].tolist()) & seen))
            fold_json = out / "folds" / f"fold{rnd.index}.json"
            if fold_json.exists() and (out / "weights" / f"fold{rnd.index}.pt").exists():
                results.append(json.loads(fold_json.read_text()))
                tick(config.epochs)
                continue
            x = padded(feats[f])
            rest = cnn_rest(load_model(cnn_dir, f), config.layer) if head == "cnn" else None

            def make_model(rest=rest, n_in=x.shape[2]):
                return SequenceNet(n_in, len(class_names), spec, frame_head=frame_y is not None, cnn_head=rest,
                                   class_index=class_index)

            res, _ = _train_round(rnd, x, lengths, y, frame_y, len(class_names), make_model, config, out, tick)
            res["cnn_fold"] = f
            res["cnn_subjects_seen"] = cnn_seen[-1]
            pred_frames, mapping = _cnn_baseline(logits[f], cnn["class_names"] or [], fs.class_names)
            if task == "expression":  # the CNN on each test sequence's apex frame alone
                te = rnd.test[np.isin(y[rnd.test], [j for j, _, _ in mapping["pairs"]])]
                res["cnn_apex_acc"] = float((pred_frames[apex[te]] == y[te]).mean()) if len(te) else None
                res["cnn_apex_n"] = int(len(te))
            elif neutral is not None and mapping["pairs"]:  # the CNN frame by frame: any frame not neutral
                rows = index.rows[rnd.test]
                nonneutral = np.where(rows >= 0, pred_frames[np.maximum(rows, 0)] != neutral, False)
                res["cnn_any_frame_detection_acc"] = float((nonneutral.any(axis=1).astype(np.int64) == y[rnd.test]).mean())
            write_json(fold_json, res)
            results.append(res)

    protocol = _protocol(fs, index, rounds, task, class_names, subjects_s, cnn_dir, config, spec,
                         config_doc["n_features"], faceset_path.stem, cnn_seen)
    write_json(out / "metrics.json", _summarise(results, task, class_names, protocol, 1, feature_s))
    return out


@contextlib.contextmanager
def _one_thread():
    """torch on one intra-op thread inside the block; the previous count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _resolve_head(model: FERNet, config: SequenceConfig, task: str, data_classes, cnn_classes) -> tuple[str, list | None]:
    """(``cnn`` or ``linear``, the CNN output index of each data class for ``cnn``)."""
    rest = cnn_rest(model, config.layer)
    index = None
    if task == "expression" and rest is not None:
        pairs = {j: i for j, i, _ in label_mapping(cnn_classes, data_classes)["pairs"]}
        if len(pairs) == len(data_classes):
            index = [pairs[j] for j in range(len(data_classes))]
    if config.head == "linear" or (config.head == "auto" and index is None):
        return "linear", None
    if index is None:
        why = ("micro-expression detection has classes of its own (none, micro)" if task == "micro" else
               f"layer {config.layer!r} is inside model.features (use 'features' or a classifier layer)" if rest is None
               else f"some data classes have no counterpart among the CNN's ({', '.join(cnn_classes)})")
        raise ValueError(f"head 'cnn': not possible here: {why}; use head 'linear' or 'auto'")
    return "cnn", index


def _mean_sd(values) -> tuple[float | None, float | None]:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _summarise(results: list[dict], task: str, class_names, protocol: dict, threads: int, feature_s: float) -> dict:
    acc, sd = _mean_sd(r["test_acc"] for r in results)
    conf = np.sum([np.array(r["confusion"]) for r in results], axis=0)
    row = conf.sum(axis=1)
    d = {
        "task": task,
        "mean_test_acc": acc, "sd_test_acc": sd,
        "mean_best_val_acc": _mean_sd(r["best_val_acc"] for r in results)[0],
        "n_folds": len(results),
        "folds": results,
        "confusion": conf.tolist(),
        "confusion_axes": "rows: true class, columns: predicted class (class order of 'classes')",
        "classes": list(class_names),
        "per_class_acc": {n: (float(conf[i, i] / row[i]) if row[i] else None) for i, n in enumerate(class_names)},
        "protocol": protocol,
    }
    what = "sequence accuracy" if task == "expression" else "micro-expression detection accuracy"
    summary = f"{100 * acc:.2f} ± {100 * sd:.2f}% mean test {what} over {len(results)} round(s)"
    if task == "expression":
        m, s = _mean_sd(r.get("cnn_apex_acc") for r in results)
        d["cnn_apex"] = {"mean_acc": m, "sd_acc": s, "text": "the frozen CNN's accuracy on each test sequence's apex frame alone"}
        if m is not None:
            summary += f"; the CNN on the apex frame alone {100 * m:.2f} ± {100 * s:.2f}%"
    else:
        errors = np.array([e for r in results for e in r["onset_errors"]], dtype=np.int64)
        d["micro"] = {
            "detection_acc": acc,
            "frame_f1": _mean_sd(r["frame_f1"] for r in results)[0],
            "onset_within_2": float((np.abs(errors) <= 2).mean()) if len(errors) else None,
            "onset_median_abs": float(np.median(np.abs(errors))) if len(errors) else None,
            "n_detected_micro": int(len(errors)),
            "cnn_any_frame_detection_acc": _mean_sd(r.get("cnn_any_frame_detection_acc") for r in results)[0],
        }
        if len(errors):
            summary += (f"; onset within ±2 frames for {100 * d['micro']['onset_within_2']:.1f}% of "
                        f"{len(errors)} detected micro-expressions")
    d["summary"] = f"{summary} — {protocol['text']}"
    d["wall_s"] = float(sum(r["wall_s"] for r in results))
    d["cpu_s"] = float(sum(r["cpu_s"] for r in results))
    d["feature_s"] = float(feature_s)
    d["device"] = "cpu"
    d["torch_threads"] = threads
    return d


def load_sequence_model(seq_run, fold: int = 0) -> SequenceNet:
    """A sequence run's LSTM of round ``fold``, in eval mode on the CPU."""
    seq_run = Path(seq_run)
    try:
        cfg = json.loads((seq_run / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{seq_run / 'config.json'}: not a sequence run ({e}); train one with `python -m fercore sequence`") from None
    path = seq_run / "weights" / f"fold{fold}.pt"
    if not path.exists():
        raise RunError(f"{path}: no weights for round {fold}")
    spec = LSTMSpec(**cfg["lstm"])
    rest = None
    if cfg.get("head") == "cnn":
        fold_json = seq_run / "folds" / f"fold{fold}.json"
        cnn_fold = json.loads(fold_json.read_text()).get("cnn_fold", 0) if fold_json.exists() else cfg["cnn_run"]["folds"][0]
        rest = cnn_rest(load_model(cfg["cnn_run"]["dir"], cnn_fold), cfg["layer"])
    model = SequenceNet(int(cfg["n_features"]), len(cfg["class_names"]), spec, frame_head=cfg["task"] == "micro",
                        cnn_head=rest, class_index=cfg.get("class_index"))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
