"""Named training setups: the embedded phantom default and the papers' setups.

``phantom-default`` is sized so that all 10 folds train on two CPU cores in a few minutes
(figures in ``docs/training.md``). The paper presets reproduce Khorrami et al. 2015 and Barsoum
et al. 2016 (FER+) for users who have the data and a GPU; on a CPU they take days.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from fercore.store.faceset_h5 import read_faceset_info
from fercore.training.augment import AugmentParams
from fercore.training.loop import TrainConfig, train
from fercore.training.models import ModelSpec
from fercore.util import Progress

__all__ = ["DEFAULT_PHANTOM", "DEFAULT_TRAIN_PRESET", "PRESETS", "Preset", "preset", "resolve", "train_preset"]

#: The preset ``python -m fercore train`` uses without ``--preset``.
DEFAULT_TRAIN_PRESET = "zero-bias-sgd"
#: Options of :func:`fercore.data.phantom.generate_faceset` for the dashboard's default pipeline.
DEFAULT_PHANTOM = dict(n=2400, size=48, seed=0)


@dataclass(frozen=True)
class Preset:
    """A named model + training setup.

    Attributes
    ----------
    name : str
    description : str
        What it reproduces, on which data, and what it costs.
    model : dict
        :class:`~fercore.models.ModelSpec` fields except ``n_classes`` (taken from the data);
        an ``in_size`` of None takes the FaceSet's image size.
    config : TrainConfig
    data : str
        The data set it is meant for.
    """

    name: str
    description: str
    model: dict
    config: TrainConfig
    data: str = ""
    expect: str = field(default="")


_KHORRAMI = dict(momentum=0.9, weight_decay=1e-5, lr=0.01, schedule="constant", batch_size=64, augment=True)
# 31,000 iterations of 64 images: about 1,900 epochs of CK+'s ~1,050 training images per round,
# about 700 of TFD's ~2,900.
_FERPLUS = dict(momentum=0.9, weight_decay=1e-5, lr=0.05, schedule="ferplus", batch_size=32, epochs=100, augment=True)
# The embedded default's network and training (emotion only); phantom-multitask adds the AU head.
_PHANTOM_MODEL = dict(arch="zero_bias", in_size=None, width=0.125, dropout=False, init_seed=0, channels=(8, 16, 128))
_PHANTOM_TRAIN = TrainConfig(epochs=7, batch_size=16, lr=0.01, schedule="cosine", augment=False, seed=0, init="lsuv")
_VGG = dict(arch="vgg13", in_size=64, width=1.0, dropout=True, init_seed=0)
#: Mild augmentation for short runs on real faces: rotation +-5 degrees, scale 0.9-1.1, shift
#: +-5 % (2.4 px at 48 px), flip, a little gamma and contrast (brightness and contrast shifts
#: are largely undone by per-image standardisation; gamma is not).
MILD_AUGMENT = AugmentParams(flip=0.5, rotate_deg=5.0, scale=(0.9, 1.1), translate=0.05, gamma=(0.8, 1.25),
                             gain=(0.8, 1.2), offset=(-0.05, 0.05))

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "phantom-default",
        "Embedded phantom faces: a zero-bias CNN at the phantom's 48 px with conv 8 / 16 / 128 filters "
        "(eighth width, half width in conv3), trained on the emotion labels only, as the papers "
        "trained: what an expression network of this size learns about the AUs by itself; "
        "unit-variance initialisation, SGD lr 0.005 with cosine decay (at 0.01 four of the ten "
        "emotion-only rounds stayed at chance; the AU head of phantom-multitask had kept them "
        "learning), batch 16, 7 epochs, no augmentation (the phantom's nuisance is already drawn "
        "in); 10 folds in about 2-3 minutes on two CPU cores.",
        _PHANTOM_MODEL,
        dataclasses.replace(_PHANTOM_TRAIN, lr=0.005),
        data="phantom (fercore.phantom.generate_faceset with DEFAULT_PHANTOM)",
        expect=">= 95% mean subject-independent test accuracy",
    ),
    Preset(
        "phantom-multitask",
        "phantom-default (at lr 0.01) also trained, through an AU head, on the drawn AUs (weight 1): a network "
        "that was told the AUs, so its filters are known to carry them (the ground-truth check of "
        "docs/fau_groundtruth.md, and the run to compare the emotion-only default against).",
        _PHANTOM_MODEL,
        dataclasses.replace(_PHANTOM_TRAIN, au_weight=1.0),
        data="phantom (fercore.phantom.generate_faceset with DEFAULT_PHANTOM)",
        expect=">= 95% mean subject-independent test accuracy",
    ),
    Preset(
        "phantom-au",
        "phantom-default with conv1 / conv2 at quarter width (conv 16 / 32 / 128), AU weight 2, "
        "trained twice as long (14 epochs), and its AU head reading the pooled conv3 maps "
        "(au_input='features'), so conv3 filters must carry the AUs themselves: learns more AUs "
        "apart from their emotions (the honest-FAU evidence of docs/honest_fau.md, on a phantom "
        "whose extra AUs reach full intensity); about 50 s per round on two CPU cores.",
        {**_PHANTOM_MODEL, "channels": (16, 32, 128), "au_input": "features"},
        dataclasses.replace(_PHANTOM_TRAIN, au_weight=2.0, epochs=14),
        data="phantom (fercore.phantom.generate_faceset; docs/honest_fau.md: extra_max=5, p_extra=0.5)",
        expect="96-97% round-0 test accuracy on that phantom (init seeds 0-4: 0.963-0.967)",
    ),
    Preset(
        "cpu-real",
        "Real faces on a CPU: Khorrami et al.'s zero-bias CNN at half width (conv 32 / 64 / 128) with dropout "
        "on FC 300, 48 px input, per-image standardisation (whatever the data set asks for), unit-variance "
        "initialisation, SGD lr 0.005 with cosine decay, momentum 0.9, weight decay 5e-4, batch 32, 28 epochs, "
        "mild augmentation (rotation +-5 deg, scale 0.9-1.1, shift +-5 %, flip, gamma 0.8-1.25) and the mean of "
        "a face and its mirror image at test time. Sized for ~1,000 faces over 10 subject-independent folds "
        "within ~15 minutes on two CPU cores (docs/training.md gives the measurements); the paper presets "
        "are GPU recipes.",
        dict(arch="zero_bias", in_size=48, width=0.5, dropout=True, init_seed=0),
        TrainConfig(epochs=28, batch_size=32, lr=0.005, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                    augment=True, augment_params=MILD_AUGMENT, init="lsuv", normalize="standardize",
                    flip_test=True),
        data="real photographs (CK+ frames, JAFFE, folders, FER2013 subsets) imported with the canonical geometry",
        expect="see docs/training.md",
    ),
    Preset(
        "zero-bias-sgd",
        "Khorrami et al.'s zero-bias CNN (full width, no dropout) at the data's own image size with their "
        "SGD settings (lr 0.01 constant, momentum 0.9, weight decay 1e-5, batch 64, the paper's "
        "initialisation), 10 epochs, no augmentation: a plain starting point for any FaceSet, and what "
        "`python -m fercore train` uses without --preset.",
        dict(arch="zero_bias", in_size=None, width=1.0, dropout=False, init_seed=0),
        TrainConfig(epochs=10, batch_size=64, lr=0.01, schedule="constant", augment=False, init="paper"),
        data="any FaceSet",
    ),
    Preset(
        "khorrami-ckplus",
        "Khorrami et al. 2015 on CK+ 8 classes (first frame neutral + last 3 frames): zero-bias CNN 96 px, "
        "augmentation + dropout, SGD lr 0.01, 31k iterations; best-validation checkpoint scored on test.",
        dict(arch="zero_bias", in_size=96, width=1.0, dropout=True, init_seed=0),
        TrainConfig(epochs=1900, **_KHORRAMI),
        data="CK+ (label set ckplus8), 10 subject-independent folds", expect="about 95.1% (paper)",
    ),
    Preset(
        "khorrami-ckplus6",
        "Khorrami et al. 2015 on CK+ six classes (neutral and contempt dropped).",
        dict(arch="zero_bias", in_size=96, width=1.0, dropout=True, init_seed=0),
        TrainConfig(epochs=1900, **_KHORRAMI),
        data="CK+ six-class (label set ckplus6), 10 subject-independent folds", expect="about 96.4% (paper)",
    ),
    Preset(
        "khorrami-tfd",
        "Khorrami et al. 2015 on the Toronto Face Database, its 5 official folds.",
        dict(arch="zero_bias", in_size=96, width=1.0, dropout=True, init_seed=0),
        TrainConfig(epochs=700, **_KHORRAMI),
        data="TFD (label set tfd), 5 predefined splits", expect="about 88.6% (paper)",
    ),
    *[
        Preset(
            f"ferplus-vgg13-{short}",
            f"Barsoum et al. 2016 (FER+) VGG13, 64 px, {label} labels; lr 0.05 / 0.025 after 20 epochs / "
            f"0.005 after 40, batch 32, 100 epochs; Khorrami's augmentation stands in for their affine one.",
            dict(_VGG),
            TrainConfig(scheme=scheme, **_FERPLUS),
            data="FER+ (fer2013.csv + fer2013new.csv), Training/PublicTest/PrivateTest split",
            expect=f"{paper} (paper, mean ± sd of 5 runs)",
        )
        for short, scheme, label, paper in (
            ("mv", "majority", "majority-vote", "83.85 ± 0.63%"),
            ("ml", "multilabel", "multi-label", "83.97 ± 0.36%"),
            ("pld", "probability", "probability-drawn", "84.99 ± 0.37%"),
            ("cel", "crossentropy", "cross-entropy", "84.72 ± 0.24%"),
        )
    ],
)}

_SPEC_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)} - {"n_classes"}
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def preset(name: str) -> tuple[dict, TrainConfig]:
    """The model fields (ModelSpec without ``n_classes``) and TrainConfig of a preset.

    Raises
    ------
    ValueError
        Naming the unknown preset and listing the known ones.
    """
    try:
        p = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
    return dict(p.model), p.config


def resolve(name: str, faceset_path, **overrides) -> tuple[ModelSpec, TrainConfig]:
    """The ModelSpec and TrainConfig a preset gives on a FaceSet file, with keyword overrides.

    ``overrides`` may name any ModelSpec field but ``n_classes`` and any TrainConfig field; a
    value of None leaves the preset's value. A ``width`` override without ``channels`` scales the
    paper's channel counts (the preset's explicit ``channels`` are dropped). A preset's AU head
    (``au_weight``) is left out on data without AU codes unless ``au_weight`` is given
    explicitly; ``n_aus`` is set to the data's AU count.
    """
    model, config = preset(name)
    unknown = sorted(set(overrides) - _SPEC_FIELDS - _CONFIG_FIELDS)
    if unknown:
        raise ValueError(
            f"preset {name!r}: unknown option(s) {', '.join(unknown)}; model options: {', '.join(sorted(_SPEC_FIELDS))}; "
            f"training options: {', '.join(sorted(_CONFIG_FIELDS))}"
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "width" in overrides and "channels" not in overrides:
        model["channels"] = None
    model.update({k: v for k, v in overrides.items() if k in _SPEC_FIELDS})
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if k in _CONFIG_FIELDS})
    info = read_faceset_info(faceset_path)
    if model.get("in_size") is None:
        model["in_size"] = info["size"]
    n_aus = len(info.get("au_ids", ()))
    if config.au_weight and not n_aus and "au_weight" not in overrides:
        config = dataclasses.replace(config, au_weight=0.0)  # the preset's AU head needs AU codes
    model["n_aus"] = n_aus if config.au_weight else 0  # multi-task: one output per AU column
    return ModelSpec(n_classes=len(info["class_names"]), **model), config


def train_preset(faceset_path, name: str = "phantom-default", *, progress: Progress | None = None,
                 root=None, device=None, **overrides) -> Path:
    """Train a preset on a FaceSet file (or return its cached run); see :func:`resolve`.

    Parameters
    ----------
    faceset_path : path
    name : str
        A key of :data:`PRESETS`.
    progress : callable(done, total, stage), optional
    root : path, optional
        Folder of runs (default :func:`fercore.util.runs_dir`).
    device : optional
        Torch device (default CUDA when present).
    **overrides
        ModelSpec / TrainConfig fields replacing the preset's (e.g. ``epochs=2``, ``width=0.5``).

    Returns
    -------
    Path
        The run directory.
    """
    spec, config = resolve(name, faceset_path, **overrides)
    return train(faceset_path, spec, config, progress=progress, root=root, device=device)
