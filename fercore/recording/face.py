"""Analyse one face with a run's network: prediction, activation maps, top filters, Grad-CAM.

The dashboard's upload page calls :func:`analyze_face` with an already preprocessed face
(:func:`fercore.data.preprocess.preprocess_face`). The network is loaded once per run directory
and weights file (a small LRU). For the project's own ``FERNet`` the forward pass walks
``model.features`` itself instead of using hooks, so concurrent calls on the shared model do not
interfere; any other network (an imported one) is read through forward hooks, so its callers
hold a lock around the call (the dashboard's ``_MODEL_LOCK``), and takes the run's own input spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fercore.training.models import FERNet, conv_layers, feature_modules, forward_features

__all__ = ["FaceAnalysis", "SequenceFrames", "Upload", "analyze_face", "cached_model", "cached_network", "prepare_upload",
           "sequence_frames"]

@functools.lru_cache(maxsize=4)
def _load_network(run_dir: str, fold: int | None, stamp: tuple):
    from fercore.training.loop import default_device
    from fercore.training.network import load_network

    net = load_network(run_dir, fold)
    net.module.to(default_device()).eval()
    for p in net.module.parameters():
        p.requires_grad_(False)
    return net


def cached_network(run_dir: str | Path, fold: int | None = None):
    """:func:`fercore.training.network.load_network` of a run, in eval mode without gradients (on
    CUDA when present), kept in a small LRU keyed by run directory, fold and the modification
    times of its config and weights (or model file), so new weights are picked up."""
    from fercore.store.layout import is_imported, load_config, trained_folds

    run_dir = Path(run_dir).resolve()
    cfg = load_config(run_dir)
    if is_imported(cfg):
        fold = None
        files = [run_dir / "config.json", *sorted((run_dir / "weights").glob("fold*.pt"))]
    else:
        folds = trained_folds(run_dir)
        fold = fold if fold is not None and fold >= 0 else (folds[0] if folds else 0)
        files = [run_dir / "config.json", run_dir / "weights" / f"fold{fold}.pt"]
    stamp = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in files)
    return _load_network(str(run_dir), fold, stamp)


def cached_model(run_dir: str | Path, fold: int | None = None):
    """The module of :func:`cached_network` (the same object while its weights are unchanged)."""
    return cached_network(run_dir, fold).module


@dataclass
class Upload:
    """A photo made ready for a run's network.

    Attributes
    ----------
    grey : (H, W) uint8
        The decoded photo.
    crop : fercore.data.preprocess.FaceCrop
        The face, cropped as the run's training faces were (``crop.landmarks``: the 68 points in
        crop pixels when a plausible fit exists).
    landmarks : (68, 2) float32 or None
        The points in pixels of ``grey`` (for drawing on the photo).
    template : (3, 2) float or None
        The face geometry the crop was made to (None: the papers' box crop).
    """

    grey: np.ndarray
    crop: object
    landmarks: np.ndarray | None
    template: np.ndarray | None


def prepare_upload(reader, data: bytes, *, centre_crop: bool = False) -> Upload:
    """Decode a photo and crop its face exactly as the run's training faces were cropped.

    The run's recorded preprocessing (``config.json`` ``preprocess``) with detection on; the crop
    is made to the geometry of the run's FaceSet (:func:`fercore.data.preprocess.face_geometry`:
    the canonical template, or the mean geometry of a data set imported pre-cropped such as
    FER2013, or of the phantom's drawn faces), so an upload lands where the training faces sit.

    Raises
    ------
    fercore.data.preprocess.ImageDecodeError
        Not a readable image.
    fercore.data.preprocess.NoFaceError
        No face found and ``centre_crop`` is False.
    """
    from fercore.data.preprocess import decode_image, face_geometry, preprocess_face, upload_options

    template = None
    recorded = reader.config.get("preprocess")
    if reader.has_records:
        fs = reader.faceset()
        template = face_geometry(fs.meta, fs.landmarks, fs.size)
        if recorded is None:  # an imported network: the preprocessing of the faces it was recorded on
            recorded = fs.meta.get("preprocess")
    options = upload_options(recorded, size=int(reader.config["model"]["in_size"]),
                             centre_crop=centre_crop, template=template)
    grey = decode_image(data, max_pixels=options.max_pixels)
    crop = preprocess_face(grey, options, template=template)
    lm = None
    if crop.landmarks is not None and crop.matrix is not None:
        inv = np.linalg.inv(np.vstack([crop.matrix, [0, 0, 1]]))[:2]
        lm = (crop.landmarks @ inv[:, :2].T + inv[:, 2]).astype(np.float32)
    return Upload(grey=grey, crop=crop, landmarks=lm, template=template if crop.geometry == "canonical" else None)


@dataclass
class FaceAnalysis:
    """What one face does to the network.

    Attributes
    ----------
    probs : (C,) float32
        Softmax class probabilities.
    class_names : tuple of str
    pred : int
        Index of the most probable class.
    activations : dict of layer to (F, h, w) float32
        Conv outputs (before ReLU) of every recorded layer (every conv layer without records).
    top_filters : dict of layer to list of (filter, value)
        The ``top`` filters with the highest spatial maximum, best first.
    gradcam : dict of class name to (S, S) float32 in [0, 1]
        Grad-CAM of each class on the last conv layer, resized to the face.
    filter_aus : dict of layer to list of dict
        For each top filter, the AU the analysis judges it by (``judged`` in the records: the AU
        of the deepest stage of the funnel it reaches) with keys filter, value, au, au_name,
        stage (0-4), share_distinct, excess, q; empty when the run is not analysed.
    layer_gradcam : str
        The layer Grad-CAM used.
    """

    probs: np.ndarray
    class_names: tuple[str, ...]
    pred: int
    activations: dict[str, np.ndarray]
    top_filters: dict[str, list[tuple[int, float]]]
    gradcam: dict[str, np.ndarray]
    filter_aus: dict[str, list[dict]] = field(default_factory=dict)
    layer_gradcam: str = ""

    @property
    def pred_name(self) -> str:
        return self.class_names[self.pred]


def _check_face(face) -> np.ndarray:
    face = np.asarray(face)
    if face.dtype != np.uint8 or face.ndim != 2 or face.shape[0] != face.shape[1]:
        raise ValueError(f"face: expected a square (S, S) uint8 grey image (a preprocessed face), "
                         f"got shape {face.shape} dtype {face.dtype}; run fercore.preprocess.preprocess_face first")
    return face


def analyze_face(reader, face: np.ndarray, *, top: int = 8) -> FaceAnalysis:
    """Analyse one preprocessed face with the run behind ``reader``.

    Parameters
    ----------
    reader : fercore.reader.RunReader
    face : (S, S) uint8
        A preprocessed grey face; resized to the model's input like in training.
    top : int
        How many most active filters to list per layer.

    Returns
    -------
    FaceAnalysis
    """

    face = _check_face(face)
    if int(top) < 1:
        raise ValueError(f"top: expected a positive number of filters, got {top!r}")
    fold = reader.header.get("fold") if reader.has_records else None
    net = cached_network(reader.run_dir, fold)
    if isinstance(net.module, FERNet):
        acts, cam, probs, last = _fernet_face(net, reader, face)
    else:
        acts, cam, probs, last = _any_face(net, reader, face)
    layers = list(acts)
    n_classes = len(probs)
    names = tuple(reader.class_names) if len(reader.class_names) == n_classes else tuple(
        reader.config.get("class_names", [f"class {i}" for i in range(n_classes)]))
    cams = {names[c]: cam[c] for c in range(n_classes)}

    activations = {name: acts[name] for name in layers}
    top_filters = {}
    for name, a in activations.items():
        mx = a.reshape(a.shape[0], -1).max(1)
        order = np.argsort(-mx, kind="stable")[: int(top)]
        top_filters[name] = [(int(f), float(mx[f])) for f in order]
    filter_aus = {}
    if reader.has_stats:
        from fercore.data.facs import au_name

        for name in layers:
            ev = reader.evidence(name)
            rows = []
            for f, v in top_filters[name]:
                a = int(ev["judged"][f])
                au = int(ev["au_ids"][a])
                rows.append({"filter": f, "value": v, "au": au, "au_name": au_name(au),
                             "stage": int(ev["stage"][f, a]), "share_distinct": float(ev["share_distinct"][f, a]),
                             "excess": float(ev["excess"][f, a]), "q": float(ev["q_emotion"][f, a])})
            filter_aus[name] = rows
    return FaceAnalysis(probs=probs, class_names=names, pred=int(np.argmax(probs)), activations=activations,
                        top_filters=top_filters, gradcam=cams, filter_aus=filter_aus, layer_gradcam=last)


def _gradcam(target: torch.Tensor, grads: torch.Tensor, size: int) -> np.ndarray:
    """(C, S, S) Grad-CAM of every class, in [0, 1]: ``target`` (F, h, w) the layer's map, ``grads``
    (C, F, h, w) the gradient of each class's score with respect to it."""
    weights = grads.mean(dim=(2, 3))  # (C, F)
    cam = F.relu(torch.einsum("cf,fhw->chw", weights, target))  # (C, h, w)
    cam = F.interpolate(cam[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
    return torch.where(peak > 1e-12, cam / peak, torch.zeros_like(cam)).clamp(0, 1).cpu().numpy().astype(np.float32)


def _fernet_face(net, reader, face: np.ndarray):
    """A FERNet's maps, Grad-CAM (last conv layer) and probabilities, walking ``features`` (no hooks)."""
    model = net.module
    convs = conv_layers(model)
    layers = [name for name in (reader.layers if reader.has_records else convs) if name in convs] or convs
    last = convs[-1]
    dev = next(model.parameters()).device
    x = net.inputs.prepare(face[None]).to(dev)
    acts: dict[str, torch.Tensor] = {}

    def keep(name: str, m: torch.nn.Module, t: torch.Tensor) -> torch.Tensor:
        out = m(t)
        if name in layers:
            acts[name] = out
        return out

    with torch.no_grad():
        target = forward_features(model, x, until=last, step=keep)  # (1, F, h, w) last conv output
    after = feature_modules(model)[len(feature_modules(model, last)):]

    def head(t: torch.Tensor) -> torch.Tensor:  # last conv output -> logits
        for _, m in after:
            t = m(t)
        return model.classifier(torch.flatten(t, 1))

    with torch.no_grad():
        logits = head(target)[0]  # (C,)
    probs = torch.softmax(logits, 0).cpu().numpy().astype(np.float32)
    n_classes = logits.shape[0]
    # Grad-CAM of every class in one backward pass: copy c of the map feeds class c's logit
    with torch.enable_grad():
        rep = target.expand(n_classes, *target.shape[1:]).clone().requires_grad_(True)
        (grads,) = torch.autograd.grad(head(rep).diagonal().sum(), rep)  # (C, F, h, w)
    cam = _gradcam(target[0], grads, face.shape[0])
    maps = {name: acts[name][0].detach().cpu().numpy().astype(np.float32) for name in layers}
    return maps, cam, probs, last


def _any_face(net, reader, face: np.ndarray):
    """Any network's maps (forward hooks on the recorded layers), Grad-CAM on its last conv layer
    in forward order, and probabilities (its input spec; a softmax output is read as such).
    Callers sharing the module between threads hold a lock (hooks see every forward pass)."""
    from fercore.recording.hooks import LayerCapture

    module = net.module
    last = net.layers[-1]
    layers = [name for name in (reader.layers if reader.has_records else net.layers)]
    dev = next(iter(module.parameters()), torch.zeros(0)).device
    x = net.inputs.prepare(face[None]).to(dev)
    n_classes = len(net.class_names)
    watch = list(dict.fromkeys([*layers, last]))
    with torch.enable_grad(), LayerCapture(module, watch, detach=False) as cap:
        # one copy of the face per class: copy c's map feeds class c's score (one backward pass)
        xr = x.expand(n_classes, -1, -1, -1).clone().requires_grad_(True)
        scores = net.scores(xr)  # (C, C)
        target = cap.outputs[last]
        if target.dim() != 4:
            raise ValueError(f"Grad-CAM: the last conv layer {last!r} returns shape {tuple(target.shape)}, not a map")
        (grads,) = torch.autograd.grad(scores.diagonal().sum(), target)
        maps = {}
        for name in layers:
            a = cap.outputs[name][0].detach()
            maps[name] = (a if a.dim() == 3 else a[:, None, None]).cpu().numpy().astype(np.float32)
    probs = torch.softmax(scores[0].detach(), 0).cpu().numpy().astype(np.float32)
    cam = _gradcam(target[0].detach(), grads.detach(), face.shape[0])
    return maps, cam, probs, last


@dataclass
class SequenceFrames:
    """One recorded sequence through a run, frame by frame (what the dashboard's Sequences view plays).

    Attributes
    ----------
    sequence : str
    rows : (T,) int64
        FaceSet rows of the frames, in frame order.
    images : (T, S, S) uint8
    labels : (T,) int64
        Per-frame labels (-1 where only the sequence is labelled).
    phases : (T,) int8 or None
    probs : (T, C) float32
        The run's class probabilities per frame (one forward pass of the frames).
    intensity : (T, A) float32
        AU intensities per frame (NaN where not coded).
    activation : dict of layer to (T, F) float32
        Each recorded filter's per-frame maximum (read from the records).
    class_names : tuple of str
    au_ids : (A,) int64
    """

    sequence: str
    rows: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    phases: np.ndarray | None
    probs: np.ndarray
    intensity: np.ndarray
    activation: dict[str, np.ndarray]
    class_names: tuple[str, ...]
    au_ids: np.ndarray


def sequence_frames(reader, sequence: str) -> SequenceFrames:
    """Read one sequence of a recorded run's FaceSet and run its frames through the run's network.

    Parameters
    ----------
    reader : fercore.store.reader.RunReader
        A recorded run whose FaceSet has ``sequences`` (and ``frames`` for their order).
    sequence : str
        A sequence id of the FaceSet.

    Raises
    ------
    ValueError
        The FaceSet has no sequences, or not this one (the message names a few that exist).
    """
    from fercore.data.sequences import sequence_index

    fs = reader.faceset()
    if fs.sequences is None:
        raise ValueError(f"{reader.name}: its FaceSet has no sequences; import or generate one with frames "
                         "(python -m fercore phantom-seq, or import ckplus --frames all)")
    index = sequence_index(fs.sequences, fs.frames)
    hit = np.flatnonzero(index.ids == str(sequence))
    if not len(hit):
        raise ValueError(f"sequence {sequence!r} is not in {reader.name}'s FaceSet; e.g. "
                         + ", ".join(map(str, index.ids[:3])))
    s = int(hit[0])
    rows = index.rows[s, : index.lengths[s]].astype(np.int64)
    net = cached_network(reader.run_dir, reader.header.get("fold") if reader.has_records else None)
    x = net.inputs.prepare(fs.images[rows])
    dev = next(iter(net.module.parameters()), torch.zeros(0)).device
    with torch.no_grad():
        probs = torch.softmax(net.scores(x.to(dev)), dim=1).cpu().numpy().astype(np.float32)
    activation = {layer: reader.max_activations(layer)[rows].astype(np.float32) for layer in reader.layers}
    return SequenceFrames(sequence=str(index.ids[s]), rows=rows, images=fs.images[rows], labels=fs.labels[rows],
                          phases=None if fs.phases is None else fs.phases[rows], probs=probs,
                          intensity=fs.aus[rows].astype(np.float32), activation=activation,
                          class_names=tuple(fs.class_names), au_ids=fs.au_ids)
