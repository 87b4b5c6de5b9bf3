"""k-fold training of expression CNNs with the papers' protocols, cached and resumable.

:func:`train` takes a FaceSet file, a :class:`~fercore.models.ModelSpec` and a
:class:`TrainConfig` and returns the run directory
``cache/runs/<data>-<arch>-<scheme>-<hash8>/``. The hash covers the FaceSet's content hash, the
model spec and the config, so the same inputs give a cache hit (nothing is trained) and any
change gives a new directory. Each fold checkpoints every epoch; an interrupted run resumes
where it stopped and finished folds are not redone. The layout of a run directory and the fields
of ``metrics.json`` are described in ``docs/training.md``.

Protocols
---------
- k-fold rotation over ``FaceSet.folds`` (Khorrami et al. 2015): round ``t`` tests fold ``t``,
  validates on fold ``(t + 1) mod k`` and trains on the rest.
- fixed splits ``FaceSet.splits`` (N, R) (FER2013/FER+, TFD): one round per column, codes
  1 train, 2 valid, 3 test. They take precedence over ``folds`` when present.

In every round the weights of the epoch with the best validation accuracy are the ones scored on
the test set (and saved).

Several processes
-----------------
Under ``torchrun`` (:mod:`fercore.training.distributed`) the same call trains with
``DistributedDataParallel``: every process draws the same epoch order and augmentation (one
generator per round and epoch, as a single process does), takes its share of each batch
(``batch[rank::world_size]``) and the gradients are averaged over the processes, so a step sees the
same global batch as a single process. Rank 0 alone reads and writes the run directory
(checkpoints, weights, JSON) and reports progress; the others receive the checkpoint by broadcast.
Config, folds, run hash and cache layout do not change.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fercore.data.faceset import FaceSet
from fercore.store.faceset_h5 import load_faceset, read_faceset_info
from fercore.store.layout import now_text, runs_dir, training_marker
from fercore.training import distributed
from fercore.training.augment import AugmentParams, augment_batch
from fercore.training.inputs import check_method, normalize, normalize_method, to_input
from fercore.training.losses import check_scheme, draw_labels, scheme_loss
from fercore.training.models import ModelSpec, build_model, forward_features
from fercore.util import ADDED_LATER, Progress, atomic_path, config_dict, stable_hash, write_json

__all__ = [
    "INITS",
    "SCHEDULES",
    "au_loss",
    "Round",
    "TrainConfig",
    "configure_threads",
    "default_device",
    "fold_rounds",
    "learning_rate",
    "run_dir_for",
    "train",
    "unit_variance_init",
]

#: Bumped when a change to the trainer changes results, so old cached runs are not reused.
TRAINER_VERSION = 1

#: Learning-rate schedules: ``constant`` (Khorrami: lr throughout), ``ferplus`` (Barsoum: lr,
#: lr/2 after 20 epochs, lr/10 after 40 -- 0.05, 0.025, 0.005 with lr=0.05), ``cosine`` (lr
#: decayed to 0 over the epochs along a half cosine; for short runs).
SCHEDULES = ("constant", "ferplus", "cosine")

#: Weight initialisations: the architecture's own (``paper``) or rescaled to unit variance per
#: layer on training data (``lsuv``); see :class:`TrainConfig`.
INITS = ("paper", "lsuv")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; saved in ``config.json`` and hashed into the run's name.

    Attributes
    ----------
    epochs : int
        Passes over the training images per round.
    batch_size : int
    lr : float
        Base learning rate (see :data:`SCHEDULES`).
    momentum, weight_decay : float
        SGD settings (Khorrami's defaults 0.9 and 1e-5).
    schedule : str
        One of :data:`SCHEDULES`.
    augment : bool
        Khorrami's augmentation (:mod:`fercore.augment`) on every training batch.
    scheme : str
        Label scheme (:data:`fercore.losses.SCHEMES`); other than ``hard`` it reads
        ``FaceSet.targets[scheme]``.
    folds : tuple of int or None
        Which rounds (test folds, or split columns) to run; None runs all.
    seed : int
        Seed of shuffling, augmentation, label draws and dropout (the weight initialisation
        is ``ModelSpec.init_seed``).
    eval_batch_size : int
        Batch size of validation and test passes (does not change results).
    init : str
        ``paper`` keeps the architecture's own initialisation; ``lsuv`` then rescales the weights
        of every conv layer and every hidden FC layer so that its output has unit standard
        deviation on the first 256 training images (layer-sequential unit variance, Mishkin &
        Matas 2016). The zero-bias CNN's paper initialisation leaves the FC-300 input tiny beside
        its bias of 1.0, so short runs stall at chance; ``lsuv`` makes a few epochs enough.
    augment_params : AugmentParams
        Ranges of the augmentation.
    au_weight : float
        Multi-task training: with au_weight > 0 the model gets an AU head
        (``ModelSpec.n_aus`` = the FaceSet's AU columns) and the loss adds ``au_weight`` times
        the binary cross-entropy of each AU's presence (intensity > 0; AUs not coded for an
        image are left out). 0 (default) trains on the emotion labels only, as the papers did.
    normalize : str or None
        Pixel normalisation of the network's input (:data:`fercore.data.preprocess.NORMALIZE_METHODS`);
        None (default) takes the one the FaceSet asks for (``meta["preprocess"]["normalize"]``).
    flip_test : bool
        Score validation and test images by the mean of the logits of each face and its mirror
        image (test-time augmentation with a horizontal flip). Only the rounds' accuracy uses it;
        recording and uploads see the face as it is.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-5
    schedule: str = "constant"
    augment: bool = False
    scheme: str = "hard"
    folds: tuple[int, ...] | None = None
    seed: int = 0
    eval_batch_size: int = 512
    init: str = "paper"
    augment_params: AugmentParams = field(default_factory=AugmentParams)
    au_weight: float = field(default=0.0, metadata=ADDED_LATER)
    normalize: str | None = field(default=None, metadata=ADDED_LATER)
    flip_test: bool = field(default=False, metadata=ADDED_LATER)

    def __post_init__(self):
        if self.folds is not None:
            object.__setattr__(self, "folds", tuple(sorted({int(f) for f in self.folds})))
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name}: expected a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr: expected a positive learning rate, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule: expected one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        check_scheme(self.scheme)
        if self.init not in INITS:
            raise ValueError(f"TrainConfig.init: expected one of {', '.join(INITS)}, got {self.init!r}")
        if not (isinstance(self.au_weight, int | float) and 0 <= self.au_weight < math.inf):
            raise ValueError(f"TrainConfig.au_weight: expected a weight >= 0 (0 = emotion only), got {self.au_weight!r}")
        if self.normalize is not None:
            check_method(self.normalize)

    def to_dict(self) -> dict:
        """The fields as a JSON-able dict (:func:`fercore.util.config_dict`)."""
        return config_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        ap = d.pop("augment_params", None)
        if ap is not None:
            d["augment_params"] = AugmentParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in ap.items()})
        return cls(**d)


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Learning rate of (0-based) ``epoch`` under ``config.schedule``."""
    if config.schedule == "ferplus":
        return config.lr * (1.0 if epoch < 20 else 0.5 if epoch < 40 else 0.1)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    return config.lr


# ------------------------------------------------------------------------------------------
# Rounds (folds / fixed splits)

@dataclass(frozen=True)
class Round:
    """One train/valid/test round: integer image indices (labelled images only in valid/test)."""

    index: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    kind: str  # "fold" or "split"


def number_ranges(numbers) -> str:
    """Integers in words, runs of consecutive ones as ranges: ``[-1, 10, 11, ..., 49]`` gives
    ``"-1, 10–49"`` (sorted, duplicates dropped)."""
    vals = sorted({int(v) for v in numbers})
    parts = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        parts.append(str(vals[i]) if j == i else f"{vals[i]}, {vals[j]}" if j == i + 1 else f"{vals[i]}–{vals[j]}")
        i = j + 1
    return ", ".join(parts)


def fold_rounds(fs: FaceSet, *, folds=None) -> list[Round]:
    """The rounds of a FaceSet's protocol.

    With ``fs.splits`` (N, R): round ``r`` trains on code 1, validates on 2, tests on 3 of column
    ``r``. Otherwise k-fold rotation over ``fs.folds``: round ``t`` tests fold ``t``, validates on
    fold ``(t + 1) mod k``, trains on every other fold (images with fold -1 are unused).
    Unlabelled images (label -1) are left out of validation and test; which training images a
    label scheme keeps is decided by the trainer.

    Parameters
    ----------
    fs : FaceSet
    folds : iterable of int, optional
        The rounds to return (all when None).

    Returns
    -------
    list of Round
    """
    labelled = fs.labels >= 0
    if fs.splits is not None:
        n_rounds, kind = fs.splits.shape[1], "split"
    else:
        n_rounds, kind = fs.n_folds, "fold"
        if n_rounds < 3:
            raise ValueError(
                f"FaceSet folds: k-fold training needs at least 3 folds (test, valid, train), "
                f"got {n_rounds}; assign folds 0..k-1 or give predefined splits"
            )
    wanted = range(n_rounds) if folds is None else sorted({int(f) for f in folds})
    bad = [f for f in wanted if not 0 <= f < n_rounds]
    if bad:
        raise ValueError(f"folds: {number_ranges(bad)} out of range; this FaceSet has {n_rounds} {kind}s "
                         f"(0..{n_rounds - 1}); give rounds in that range, or a count K <= {n_rounds}")
    rounds = []
    for t in wanted:
        if kind == "split":
            col = fs.splits[:, t]
            tr, va, te = col == 1, col == 2, col == 3
        else:
            va_fold = (t + 1) % n_rounds
            te, va = fs.folds == t, fs.folds == va_fold
            tr = (fs.folds >= 0) & ~te & ~va
        rounds.append(Round(
            index=t,
            train=np.flatnonzero(tr),
            valid=np.flatnonzero(va & labelled),
            test=np.flatnonzero(te & labelled),
            kind=kind,
        ))
    return rounds


# ------------------------------------------------------------------------------------------
# Inputs, devices

def default_device() -> torch.device:
    """CUDA when present, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configure_threads() -> int:
    """Use as many torch threads as this process may run on (unless ``OMP_NUM_THREADS`` says)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# ------------------------------------------------------------------------------------------
# Run directories

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.")[:40] or "data"


def _run_hash(content_hash: str, spec: ModelSpec, config: TrainConfig) -> str:
    return stable_hash({"faceset": content_hash, "model": spec.to_dict(), "train": config.to_dict(),
                        "trainer_version": TRAINER_VERSION})


def run_dir_for(faceset_path, spec: ModelSpec, config: TrainConfig, *, root=None) -> Path:
    """The run directory :func:`train` uses for these inputs (reads only the file's header)."""
    info = read_faceset_info(faceset_path)
    digest = _run_hash(info["content_hash"], spec, config)
    name = f"{_slug(Path(faceset_path).stem)}-{spec.arch}-{config.scheme}-{digest[:8]}"
    return (Path(root) if root is not None else runs_dir()) / name


def _seed(*parts: int) -> int:
    return int(stable_hash(list(parts))[:15], 16)


def _save_torch(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------
# The training loop

@torch.no_grad()
def unit_variance_init(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Rescale conv and hidden FC weights in place so each layer's output has unit std on ``x``.

    Parameters
    ----------
    model : FERNet
        ``features`` then ``classifier`` (:mod:`fercore.models`); the last Linear is left alone.
    x : (B, 1, S, S) float32
        Normalised training images.
    """
    was = model.training
    model.eval()

    def step(name: str, mod: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
        if isinstance(mod, torch.nn.Conv2d):
            std = float(F.conv2d(h, mod.weight, None, mod.stride, mod.padding, mod.dilation, mod.groups).std())
            if std > 0:
                mod.weight.div_(std)
        return mod(h)

    h = torch.flatten(forward_features(model, x, step=step), 1)
    linears = [m for m in model.classifier.children() if isinstance(m, torch.nn.Linear)]
    for mod in model.classifier.children():
        if isinstance(mod, torch.nn.Linear) and mod is not linears[-1]:
            std = float((h @ mod.weight.T).std())
            if std > 0:
                mod.weight.div_(std)
        h = mod(h)
    model.train(was)

@torch.inference_mode()
def _predict(model, x: torch.Tensor, batch: int, *, flip: bool = False) -> torch.Tensor:
    """(N, 1, S, S) -> (N,) int64 predicted class, in eval mode; with ``flip`` the mean of the
    logits of each image and its mirror image."""
    was = model.training
    model.eval()

    def logits(t: torch.Tensor) -> torch.Tensor:
        out = model(t)
        return (out + model(torch.flip(t, dims=[-1]))) / 2 if flip else out

    out = torch.cat([logits(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)]) if len(x) else \
        torch.zeros(0, dtype=torch.int64, device=x.device)
    model.train(was)
    return out


def _train_targets(fs: FaceSet, idx: np.ndarray, scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kept training indices, their targets ((n,) int64 or (n, C) float32) and labels for accuracy."""
    if scheme == "hard":
        keep = idx[fs.labels[idx] >= 0]
        return keep, fs.labels[keep], fs.labels[keep]
    if scheme not in fs.targets:
        have = ", ".join(sorted(fs.targets)) or "none"
        raise ValueError(
            f"scheme {scheme!r}: the FaceSet has no targets[{scheme!r}] (it has: {have}); "
            f"use --scheme hard or a data set with {scheme} targets (e.g. FER+)"
        )
    t = fs.targets[scheme][idx]
    rows = t.sum(axis=1) > 0
    keep = idx[rows]
    t = t[rows].astype(np.float32)
    if scheme == "majority":
        return keep, t.argmax(axis=1).astype(np.int64), t.argmax(axis=1).astype(np.int64)
    return keep, t, t.argmax(axis=1).astype(np.int64)


def _check_aus(fs: FaceSet, spec: ModelSpec) -> None:
    """The FaceSet has the AU columns an AU head (``au_weight > 0``) trains on."""
    if fs.aus is None or fs.aus.shape[1] == 0:
        raise ValueError("TrainConfig.au_weight > 0 needs AU labels, and this FaceSet has none; "
                         "use au_weight 0 (emotion only) or a data set with AU codes (phantom, CK+ FACS files)")
    if fs.aus.shape[1] != spec.n_aus:
        raise ValueError(f"ModelSpec.n_aus = {spec.n_aus} but the FaceSet has {fs.aus.shape[1]} AU columns; "
                         "set n_aus to the FaceSet's AU count (fercore.presets.resolve does)")


def _au_targets(fs: FaceSet, keep: np.ndarray, spec: ModelSpec, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, A) float32 AU presence of the training images and (n, A) bool "coded" mask."""
    _check_aus(fs, spec)
    a = fs.aus[keep]
    mask = ~np.isnan(a)
    y = np.where(mask, a > 0, False).astype(np.float32)
    return torch.from_numpy(y).to(device), torch.from_numpy(mask).to(device)


@torch.inference_mode()
def _au_auc(model, x: torch.Tensor, aus: np.ndarray, au_ids, batch: int) -> dict[str, float | None]:
    """Test ROC AUC of the AU head per AU ("AU12": 0.97); None where the test images lack a positive
    or a negative (rank formula, ties counted half)."""
    from scipy.stats import rankdata

    was = model.training
    model.eval()
    scores = torch.cat([model.forward_aus(x[i:i + batch])[1] for i in range(0, len(x), batch)]).cpu().numpy()
    model.train(was)
    out = {}
    for j, a in enumerate(au_ids):
        coded = ~np.isnan(aus[:, j])
        y = aus[coded, j] > 0
        npos, nneg = int(y.sum()), int((~y).sum())
        if npos == 0 or nneg == 0:
            out[f"AU{int(a)}"] = None
            continue
        r = rankdata(scores[coded, j])
        out[f"AU{int(a)}"] = float((r[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))
    return out


def au_loss(logits: torch.Tensor, present: torch.Tensor, coded: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of AU presence over the coded (image, AU) entries (0 if none)."""
    per = F.binary_cross_entropy_with_logits(logits, present, reduction="none")
    n = coded.sum()
    return (per * coded).sum() / n.clamp(min=1)


def _confusion(y: np.ndarray, pred: np.ndarray, c: int) -> np.ndarray:
    return np.bincount(y * c + pred, minlength=c * c).reshape(c, c)


class _Step(torch.nn.Module):
    """The training forward pass as one ``forward`` (``DistributedDataParallel`` synchronises
    gradients of what runs through ``forward``): the class logits, with the AU logits when
    ``aus``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, aus: bool = False):
        return self.model.forward_aus(x) if aus else self.model(x)


def _load_checkpoint(ctx, ckpt_path: Path) -> dict | None:
    """The round's checkpoint (rank 0 reads the file; other processes get its bytes)."""
    import io

    data = ckpt_path.read_bytes() if (ctx is None or ctx.is_main) and ckpt_path.exists() else None
    data = distributed.broadcast_bytes(ctx, data)
    return None if data is None else torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _round_targets(fs: FaceSet, rnd: Round, scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_train_targets` of a round; ValueError when a part of the round has no image."""
    keep, targets, acc_labels = _train_targets(fs, rnd.train, scheme)
    if len(keep) == 0 or len(rnd.valid) == 0 or len(rnd.test) == 0:
        raise ValueError(
            f"round {rnd.index}: {len(keep)} training, {len(rnd.valid)} validation and {len(rnd.test)} test "
            f"images; every part needs at least one labelled image (check the FaceSet's folds/splits)"
        )
    return keep, targets, acc_labels


def _check_before_writing(fs: FaceSet, rounds: list[Round], spec: ModelSpec, config: TrainConfig,
                          device: torch.device) -> None:
    """Every check that training would otherwise make only inside a round, made before the run
    directory is written, so that a bad argument leaves nothing behind: the model builds at this
    input size, each round has images under the label scheme, the AU head has AU columns, and the
    device is usable."""
    try:
        build_model(spec)  # e.g. zero_bias needs an input size that is a multiple of 8
    except ValueError as e:
        raise ValueError(f"--model {spec.arch} at --size {spec.in_size}: {e}; nothing was written") from None
    for rnd in rounds:
        _round_targets(fs, rnd, config.scheme)
    if config.au_weight:
        _check_aus(fs, spec)
    try:
        torch.zeros(1, device=device)
    except (RuntimeError, AssertionError) as e:
        raise ValueError(f"device {device}: not usable here ({e}); use --device cpu, or leave it out "
                         f"(CUDA when present, else the CPU)") from None


def _train_round(fs, x_unit, x_norm, rnd: Round, spec, config, method, device, run_dir, tick) -> dict:
    """Train one round (resuming from its checkpoint) and return its result dict (under
    ``torchrun``: on every process; rank 0 writes the files)."""
    ctx = distributed.context()
    main = ctx is None or ctx.is_main
    t0, c0 = time.perf_counter(), time.process_time()
    ckpt_path = run_dir / "ckpt" / f"fold{rnd.index}.pt"
    keep, targets, acc_labels = _round_targets(fs, rnd, config.scheme)
    aug = config.augment
    x_src = x_unit if aug else x_norm
    xtr = x_src[torch.as_tensor(keep)].to(device)
    ytr = torch.as_tensor(targets).to(device)
    yacc = torch.as_tensor(acc_labels).to(device)
    xva = x_norm[torch.as_tensor(rnd.valid)].to(device)
    yva = torch.as_tensor(fs.labels[rnd.valid]).to(device)
    scheme = config.scheme
    loss_scheme = "hard" if scheme in ("majority", "probability") else scheme

    au_y = au_mask = None
    if config.au_weight:
        au_y, au_mask = _au_targets(fs, keep, spec, device)
    model = build_model(spec).to(device)
    if config.init == "lsuv":
        first = xtr[:256]
        unit_variance_init(model, normalize(first, method) if aug else first)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    state = {"epoch": 0, "best_val": -1.0, "best_epoch": -1, "best_state": None, "cpu_s": 0.0, "wall_s": 0.0,
             "train_loss": [], "train_acc": [], "val_acc": [], "epoch_s": []}
    ck = _load_checkpoint(ctx, ckpt_path)
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        state = ck["state"]
        tick(state["epoch"])
    step = _Step(model)
    if ctx is not None:
        from torch.nn.parallel import DistributedDataParallel

        # the parameters are equal on every process already (same seed, same data); DDP checks it
        step = DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=au_y is None and spec.n_aus > 0)
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    n = len(keep)
    bs = config.batch_size
    for epoch in range(state["epoch"], config.epochs):
        lr = learning_rate(config, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        seed = _seed(config.seed, rnd.index, epoch)
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed if world == 1 else _seed(seed, rank))  # dropout (a mask per process)
        perm = torch.randperm(n, generator=g).to(device)
        y_epoch = draw_labels(ytr, generator=g) if scheme == "probability" else ytr
        step.train()
        t_epoch = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for b in range(0, n, bs):
            idx = perm[b:b + bs]
            xb = xtr[idx]
            if aug:  # the whole batch's draws on every process: the generator stays in step
                xb = normalize(augment_batch(xb.cpu(), generator=g, params=config.augment_params).to(device), method)
            if world > 1:
                if len(idx) < world:
                    continue  # a last batch too small to share: every process skips it
                idx, xb = idx[rank::world], xb[rank::world]
            if au_y is None:
                out = step(xb)
                loss = scheme_loss(out, y_epoch[idx], loss_scheme)
            else:
                out, au_out = step(xb, True)
                loss = scheme_loss(out, y_epoch[idx], loss_scheme) + config.au_weight * au_loss(
                    au_out, au_y[idx], au_mask[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (out.detach().argmax(1) == yacc[idx]).sum()
        if device.type == "cuda":
            torch.cuda.synchronize()
        state["epoch_s"].append(time.perf_counter() - t_epoch)
        sums = distributed.all_reduce_sum(ctx, [float(loss_sum), float(correct)])
        # rank 0's validation decides (the weights are equal on every process)
        val_acc = int((_predict(model, xva, config.eval_batch_size, flip=config.flip_test) == yva).sum()) / len(yva)
        if ctx is not None:
            val_acc = float(distributed.all_reduce_sum(ctx, [val_acc if main else 0.0])[0])
        state["train_loss"].append(float(sums[0]) / n)
        state["train_acc"].append(float(sums[1]) / n)
        state["val_acc"].append(val_acc)
        if val_acc > state["best_val"]:
            state["best_val"], state["best_epoch"], state["best_state"] = val_acc, epoch, _cpu_state(model)
        state["epoch"] = epoch + 1
        state["wall_s"] += time.perf_counter() - t0
        state["cpu_s"] += time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        if main:
            _save_torch({"model": _cpu_state(model), "optim": opt.state_dict(), "state": state}, ckpt_path)
        tick(1)

    model.load_state_dict(state["best_state"])
    xte = x_norm[torch.as_tensor(rnd.test)].to(device)
    pred = _predict(model, xte, config.eval_batch_size, flip=config.flip_test).cpu().numpy()
    yte = fs.labels[rnd.test]
    c = len(fs.class_names)
    if main:
        _save_torch(state["best_state"], run_dir / "weights" / f"fold{rnd.index}.pt")
    train_subj = set(fs.subjects[rnd.train]) | set(fs.subjects[rnd.valid])
    result = {
        "fold": rnd.index,
        "test_acc": float((pred == yte).mean()),
        "best_val_acc": state["best_val"],
        "best_epoch": state["best_epoch"] + 1,
        "n_train": int(n), "n_valid": int(len(rnd.valid)), "n_test": int(len(rnd.test)),
        "subjects_shared_with_test": int(len(train_subj & set(fs.subjects[rnd.test]))),
        "confusion": _confusion(yte, pred, c).tolist(),
        "curves": {k: list(state[k]) for k in ("train_loss", "train_acc", "val_acc")},
        "epoch_s": list(state["epoch_s"]),
        "wall_s": state["wall_s"] + (time.perf_counter() - t0),
        "cpu_s": state["cpu_s"] + (time.process_time() - c0),
    }
    if au_y is not None:
        result["au_test_auc"] = _au_auc(model, xte, fs.aus[rnd.test], fs.au_ids, config.eval_batch_size)
    if world > 1:
        result["processes"] = world
    if main:
        write_json(run_dir / "folds" / f"fold{rnd.index}.json", result)
        ckpt_path.unlink(missing_ok=True)
    distributed.barrier(ctx)
    return result


def _augment_text(config: TrainConfig) -> str:
    """The augmentation in words: Khorrami's ranges by name, other ranges spelt out."""
    if not config.augment:
        return "none"
    a = config.augment_params
    if a == AugmentParams():
        return "Khorrami (flip, rotation, scale, translation, intensity)"
    return (f"flip p {a.flip:g}, rotation +-{a.rotate_deg:g} deg, scale {a.scale[0]:g}-{a.scale[1]:g}, "
            f"shift +-{100 * a.translate:g} %, gamma {a.gamma[0]:g}-{a.gamma[1]:g}, gain {a.gain[0]:g}-{a.gain[1]:g}, "
            f"offset {a.offset[0]:g}-{a.offset[1]:g}")


def _size_text(spec: ModelSpec) -> str:
    if spec.channels is None:
        return f"width {spec.width}"
    return f"conv channels {'/'.join(map(str, spec.channels))}" + (f", width {spec.width}" if spec.width != 1.0 else "")


def _protocol(fs: FaceSet, rounds: list[Round], spec: ModelSpec, config: TrainConfig, name: str, n_all: int) -> dict:
    kind = rounds[0].kind
    independent = all(
        not (set(fs.subjects[r.test]) & (set(fs.subjects[r.train]) | set(fs.subjects[r.valid]))) for r in rounds
    )
    if kind == "fold":
        k = fs.n_folds
        folds = f"{k} folds (test fold t, validation fold (t+1) mod {k}, the other {k - 2} train)"
    else:
        folds = f"{fs.splits.shape[1]} predefined train/valid/test split(s)"
    ran = [r.index for r in rounds]
    meta_protocol = fs.meta.get("protocol")
    frames = meta_protocol if isinstance(meta_protocol, str) and meta_protocol else "all images of the FaceSet"
    d = {
        "data_set": name,
        "source": fs.meta.get("source"),
        "n_images": int(n_all),
        "classes": list(fs.class_names),
        "n_classes": len(fs.class_names),
        "folds": folds,
        "rounds_run": ran,
        "subject_independent": bool(independent),
        "frames": frames,
        "label_scheme": config.scheme,
        "targets": (f"emotion label + AU presence (binary cross-entropy, weight {config.au_weight:g})"
                    if config.au_weight else "emotion label"),
        "model": f"{spec.arch} ({_size_text(spec)}, {spec.in_size}px input, dropout {'on' if spec.dropout else 'off'})",
        "epochs": config.epochs,
        "init": config.init,
        "augmentation": _augment_text(config),
        "best_checkpoint": "the epoch with the best validation accuracy is scored on test",
    }
    d["text"] = (
        f"{name}: {n_all} images, {len(fs.class_names)} classes ({', '.join(fs.class_names)}); {folds}"
        f"{'' if len(ran) == len(rounds) and kind == 'fold' and len(ran) == fs.n_folds else f', rounds {ran}'}; "
        f"{'subject-independent' if independent else 'NOT subject-independent'}; frames: {frames}; "
        f"label scheme {config.scheme}{'' if not config.au_weight else f' + AU presence (weight {config.au_weight:g})'}; model {d['model']}; {config.epochs} epochs; augmentation {d['augmentation']}"
    )
    return d


def _summarise(results: list[dict], fs: FaceSet, protocol: dict, device: str, threads: int) -> dict:
    accs = np.array([r["test_acc"] for r in results])
    vals = np.array([r["best_val_acc"] for r in results])
    c = len(fs.class_names)
    conf = np.sum([np.array(r["confusion"]) for r in results], axis=0) if results else np.zeros((c, c), int)
    row = conf.sum(axis=1)
    per_class = {name: (float(conf[i, i] / row[i]) if row[i] else None) for i, name in enumerate(fs.class_names)}
    sd = float(accs.std(ddof=1)) if len(accs) > 1 else 0.0
    extra = {}
    if results and "au_test_auc" in results[0]:
        per_au = {a: [r["au_test_auc"][a] for r in results if r["au_test_auc"].get(a) is not None]
                  for a in results[0]["au_test_auc"]}
        extra["mean_au_test_auc"] = {a: (float(np.mean(v)) if v else None) for a, v in per_au.items()}
    return {
        **extra,
        "mean_test_acc": float(accs.mean()),
        "sd_test_acc": sd,
        "mean_best_val_acc": float(vals.mean()),
        "n_folds": len(results),
        "folds": results,
        "confusion": conf.tolist(),
        "confusion_axes": "rows: true class, columns: predicted class (class order of 'classes')",
        "classes": list(fs.class_names),
        "per_class_acc": per_class,
        "protocol": protocol,
        "summary": f"{100 * accs.mean():.2f} ± {100 * sd:.2f}% mean test accuracy over {len(results)} round(s) "
                   f"— {protocol['text']}",
        "wall_s": float(sum(r["wall_s"] for r in results)),
        "cpu_s": float(sum(r["cpu_s"] for r in results)),
        "device": device,
        "torch_threads": threads,
    }


def train(faceset_path, spec: ModelSpec, config: TrainConfig, *, progress: Progress | None = None,
          root=None, device: str | torch.device | None = None) -> Path:
    """Train (or find cached) a model on a FaceSet file under its protocol; return the run dir.

    Parameters
    ----------
    faceset_path : str or Path
        A FaceSet HDF5 file (:func:`fercore.store.faceset_h5.save_faceset`).
    spec : ModelSpec
        ``n_classes`` must equal the FaceSet's number of classes.
    config : TrainConfig
    progress : callable(done, total, stage), optional
        Called with ``stage="train"`` after every epoch; ``total`` is epochs x rounds. Not called
        on a cache hit.
    root : path, optional
        Folder of runs (default :func:`fercore.util.runs_dir`).
    device : optional
        Default :func:`default_device` (CUDA when present). Not part of the run's hash.

    Returns
    -------
    Path
        The run directory, holding ``config.json``, ``weights/fold{t}.pt`` and ``metrics.json``.
    """
    faceset_path = Path(faceset_path)
    info = read_faceset_info(faceset_path)
    if spec.n_classes != len(info["class_names"]):
        raise ValueError(
            f"ModelSpec.n_classes is {spec.n_classes} but {faceset_path} has {len(info['class_names'])} classes "
            f"({', '.join(info['class_names'])}); set n_classes to match"
        )
    run_dir = run_dir_for(faceset_path, spec, config, root=root)
    run_hash = _run_hash(info["content_hash"], spec, config)
    ctx = distributed.context()
    main = ctx is None or ctx.is_main
    if distributed.broadcast_flag(ctx, main and _is_cached(run_dir, run_hash)):
        return run_dir

    progress = (progress or (lambda done, total, stage: None)) if main else (lambda done, total, stage: None)
    threads = configure_threads()
    if device is not None:
        device = torch.device(device)
    else:
        device = ctx.device if ctx is not None else default_device()
    fs = load_faceset(faceset_path)
    method = config.normalize or normalize_method(fs.meta)
    rounds = fold_rounds(fs, folds=config.folds)
    config_doc = {
        "run_hash": run_hash,
        "name": run_dir.name,
        "class_names": list(fs.class_names),
        "label_set": fs.label_set,
        "faceset": {
            "path": str(faceset_path.resolve()),
            "name": faceset_path.stem,
            "content_hash": info["content_hash"],
            "class_names": list(fs.class_names),
            "label_set": fs.label_set,
            "n_images": len(fs),
            "image_size": fs.size,
            "source": fs.meta.get("source"),
        },
        "model": spec.to_dict(),
        "train": config.to_dict(),
        "normalize": method,
        "preprocess": fs.meta.get("preprocess"),
        "protocol": "splits" if rounds[0].kind == "split" else "kfold",
        "rounds": [r.index for r in rounds],
        "trainer_version": TRAINER_VERSION,
    }
    _check_before_writing(fs, rounds, spec, config, device)
    with training_marker(run_dir, enabled=main):  # tells listings that this run is in progress
        if main:
            write_json(run_dir / "config.json", config_doc)

        x_unit = to_input(fs.images, in_size=spec.in_size, method=None)
        x_norm = normalize(x_unit, method)
        total = config.epochs * len(rounds)
        done = 0

        def tick(k: int) -> None:
            nonlocal done
            done += k
            progress(done, total, "train")

        results = []
        for rnd in rounds:
            fold_json = run_dir / "folds" / f"fold{rnd.index}.json"
            done_json = main and fold_json.exists() and (run_dir / "weights" / f"fold{rnd.index}.pt").exists()
            if distributed.broadcast_flag(ctx, done_json):
                results.append(json.loads(fold_json.read_text()) if main else {})
                tick(config.epochs)
                continue
            results.append(_train_round(fs, x_unit, x_norm, rnd, spec, config, method, device, run_dir, tick))

        if main:
            protocol = _protocol(fs, rounds, spec, config, faceset_path.stem, len(fs))
            summary = _summarise(results, fs, protocol, str(device), threads)
            if ctx is not None:
                summary["processes"] = ctx.world_size
            config_doc["trained"] = now_text()  # when training ended; listings show it, not a file time
            write_json(run_dir / "config.json", config_doc)
            write_json(run_dir / "metrics.json", summary)
            with contextlib.suppress(OSError):
                (run_dir / "ckpt").rmdir()  # empty once every round finished
    distributed.barrier(ctx)
    return run_dir


def _is_cached(run_dir: Path, run_hash: str) -> bool:
    """The run directory holds a finished run of this hash (a damaged one is retrained)."""
    if not ((run_dir / "metrics.json").exists() and (run_dir / "config.json").exists()):
        return False
    try:
        return json.loads((run_dir / "config.json").read_text()).get("run_hash") == run_hash
    except (OSError, ValueError):
        return False
