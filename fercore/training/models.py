"""The networks the field studies, in a small registry.

Every model is ``features`` (an ``nn.Sequential`` of named Conv2d / ReLU / MaxPool2d / Dropout
layers) followed by ``classifier``. Conv layers are addressed by their ``named_modules()`` dotted
names (``features.conv3``); :func:`conv_layers` lists them and :func:`layer_geometry` gives the
exact receptive field of any layer of ``features``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fercore.store.geometry import LayerGeometry
from fercore.store.layout import RunError, load_config, trained_folds
from fercore.util import ADDED_LATER, config_dict

__all__ = [
    "ARCHS",
    "LayerGeometry",
    "ModelSpec",
    "build_model",
    "conv_layers",
    "feature_modules",
    "forward_features",
    "layer_geometry",
    "load_model",
    "resolve_layer",
]


@dataclass(frozen=True)
class ModelSpec:
    """What builds a model; saved in every run's ``config.json``.

    Attributes
    ----------
    arch : str
        A key of :data:`ARCHS` (``zero_bias``, ``vgg13``).
    in_size : int
        Side of the square grey input in pixels.
    n_classes : int
    width : float
        Multiplies every layer's channel count (1.0 is the paper's network).
    dropout : bool
        Dropout on the fully connected layers (the paper's "dropout" variants).
    init_seed : int
        Seed of the weight initialisation.
    n_aus : int
        With n_aus > 0 the model also has an AU head: a linear layer from the last hidden FC
        layer to ``n_aus`` AU-presence logits (multi-task training, ``TrainConfig.au_weight``).
        0 (default) is the papers' emotion-only network.
    channels : tuple of int or None
        Output channels of each conv layer, input to output (zero_bias: 3, vgg13: 10), in place
        of the paper's counts times ``width``; fully connected layers still follow ``width``.
        None (default) keeps the paper's proportions.
    au_input : {"hidden", "features"}
        What the AU head reads: the last hidden FC layer (default), or the flattened output of
        ``features`` (the pooled conv maps), so the AU logits are linear in the last conv layer's
        pooled responses.
    """

    arch: str = "zero_bias"
    in_size: int = 64
    n_classes: int = 8
    width: float = 1.0
    dropout: bool = False
    init_seed: int = 0
    n_aus: int = field(default=0, metadata=ADDED_LATER)
    channels: tuple[int, ...] | None = field(default=None, metadata=ADDED_LATER)
    au_input: str = field(default="hidden", metadata=ADDED_LATER)

    def __post_init__(self):
        if self.au_input not in ("hidden", "features"):
            raise ValueError(f"ModelSpec.au_input: expected 'hidden' or 'features', got {self.au_input!r}")
        if self.channels is not None:
            ch = tuple(int(c) for c in self.channels)
            if not ch or min(ch) < 1:
                raise ValueError(f"ModelSpec.channels: expected positive channel counts, got {self.channels!r}")
            object.__setattr__(self, "channels", ch)

    def to_dict(self) -> dict:
        """The fields as a JSON-able dict; fields added after the first release are left out at
        their default (:func:`fercore.util.config_dict`), so older runs keep their hashes."""
        return config_dict(self)


def _ch(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


def _conv_channels(spec: ModelSpec, paper: list[int]) -> list[int]:
    """Each conv layer's output channels: ``spec.channels`` if given, else the paper's x width."""
    if spec.channels is None:
        return [_ch(c, spec.width) for c in paper]
    if len(spec.channels) != len(paper):
        raise ValueError(f"{spec.arch}: ModelSpec.channels needs {len(paper)} counts (one per conv layer), "
                         f"got {len(spec.channels)}: {list(spec.channels)}")
    return list(spec.channels)


class FERNet(nn.Module):
    """``features`` then ``classifier``; ``spec`` is kept on the module.

    With ``spec.n_aus > 0`` an ``au_head`` (Linear) reads the input of the classifier's last
    layer, the last hidden FC layer, and :meth:`forward_aus` returns both outputs. ``forward``
    always returns the class logits only, so recording, Grad-CAM and evaluation are unchanged.
    """

    def __init__(self, spec: ModelSpec, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.spec = spec
        self.features = features
        self.classifier = classifier
        if spec.n_aus:
            fan_in = (classifier[0] if spec.au_input == "features" else classifier[-1]).in_features
            self.au_head = nn.Linear(fan_in, int(spec.n_aus))
            g = torch.Generator().manual_seed(spec.init_seed + 1)
            with torch.no_grad():
                self.au_head.weight.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=g)
                self.au_head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, S, S) -> (N, C) logits
        return self.classifier(torch.flatten(self.features(x), 1))

    def forward_aus(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C) class logits and (N, n_aus) AU-presence logits."""
        if not self.spec.n_aus:
            raise ValueError("forward_aus: this model has no AU head (ModelSpec.n_aus = 0)")
        feats = torch.flatten(self.features(x), 1)
        if self.spec.au_input == "features":
            return self.classifier(feats), self.au_head(feats)
        hidden = self.classifier[:-1](feats)
        return self.classifier[-1](hidden), self.au_head(hidden)


def zero_bias_cnn(spec: ModelSpec) -> FERNet:
    """Khorrami et al. 2015: three 5x5 bias-free conv layers, quadrant pooling, FC 300.

    conv1 64 - pool - conv2 128 - pool - conv3 256 - quadrant max-pool (2x2 output) - FC 300
    (bias initialised to 1.0) - [dropout 0.5] - FC classes. Weights ~ N(0, (k / sqrt(fan_in))^2)
    with k drawn from U[0.2, 1.2) per layer. ``in_size`` must be a multiple of 8.
    """
    s = spec.in_size
    if s % 8:
        raise ValueError(f"zero_bias: in_size must be a multiple of 8 (quadrant pooling), got {s}")
    c1, c2, c3 = _conv_channels(spec, [64, 128, 256])
    q = s // 8  # conv3 map is s/4; each quadrant is half of it
    features = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, c1, 5, padding=2, bias=False)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2, 2)),
        ("conv2", nn.Conv2d(c1, c2, 5, padding=2, bias=False)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2, 2)),
        ("conv3", nn.Conv2d(c2, c3, 5, padding=2, bias=False)),
        ("relu3", nn.ReLU()),
        ("qpool", nn.MaxPool2d(q, q)),
    ]))
    classifier = nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(c3 * 4, 300)),
        ("relu4", nn.ReLU()),
        ("drop", nn.Dropout(0.5 if spec.dropout else 0.0)),
        ("fc2", nn.Linear(300, spec.n_classes)),
    ]))
    model = FERNet(spec, features, classifier)
    g = torch.Generator().manual_seed(spec.init_seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                k = 0.2 + torch.rand((), generator=g).item()
                m.weight.normal_(0.0, k / math.sqrt(fan_in), generator=g)
                if m.bias is not None:
                    m.bias.zero_()
        classifier.fc1.bias.fill_(1.0)
    return model


def vgg13_ferplus(spec: ModelSpec) -> FERNet:
    """Barsoum et al. 2016 ("VGG13"): 3x3 conv blocks [64,64] [128,128] [256x3] [256x3], each
    followed by max-pool and dropout 0.25, then FC 1024 - drop 0.5 - FC 1024 - drop 0.5 - FC.
    ``in_size`` must be a multiple of 16 (64 in the paper).
    """
    s = spec.in_size
    if s % 16:
        raise ValueError(f"vgg13: in_size must be a multiple of 16, got {s}")
    # PyTorch's default initialisation draws from the global generator: draw from a forked copy
    # seeded with init_seed, so the weights follow the spec and the caller's RNG is left as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.init_seed)
        return _vgg13(spec)


def _vgg13(spec: ModelSpec) -> FERNet:
    s = spec.in_size
    blocks = [[64, 64], [128, 128], [256, 256, 256], [256, 256, 256]]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = 1
    counts = iter(_conv_channels(spec, [c for block in blocks for c in block]))
    for b, block in enumerate(blocks, start=1):
        for i, _ in enumerate(block, start=1):
            c_out = next(counts)
            layers[f"conv{b}_{i}"] = nn.Conv2d(c_in, c_out, 3, padding=1)
            layers[f"relu{b}_{i}"] = nn.ReLU()
            c_in = c_out
        layers[f"pool{b}"] = nn.MaxPool2d(2, 2)
        layers[f"drop{b}"] = nn.Dropout(0.25 if spec.dropout else 0.0)
    fc = _ch(1024, spec.width)
    p = 0.5 if spec.dropout else 0.0
    classifier = nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(c_in * (s // 16) ** 2, fc)), ("relu_fc1", nn.ReLU()), ("drop_fc1", nn.Dropout(p)),
        ("fc2", nn.Linear(fc, fc)), ("relu_fc2", nn.ReLU()), ("drop_fc2", nn.Dropout(p)),
        ("fc3", nn.Linear(fc, spec.n_classes)),
    ]))
    return FERNet(spec, nn.Sequential(layers), classifier)


#: The model registry: arch name -> builder(spec).
ARCHS: dict[str, Callable[[ModelSpec], FERNet]] = {
    "zero_bias": zero_bias_cnn,
    "vgg13": vgg13_ferplus,
}


def build_model(spec: ModelSpec) -> FERNet:
    """Build the model a spec names; ValueError listing the registry otherwise."""
    try:
        builder = ARCHS[spec.arch]
    except KeyError:
        raise ValueError(f"unknown model {spec.arch!r}; known: {', '.join(ARCHS)}") from None
    return builder(spec)


def conv_layers(model: nn.Module) -> list[str]:
    """Dotted names of the model's Conv2d layers, input to output."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name``; ValueError listing the conv layers otherwise."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        raise ValueError(f"unknown layer {name!r}; conv layers are {', '.join(conv_layers(model))}")
    return modules[name]


def feature_modules(model: FERNet, until: str | None = None) -> list[tuple[str, nn.Module]]:
    """``(dotted name, module)`` of ``model.features`` in order, up to and including ``until``
    (all when None); ValueError naming the valid layers when ``until`` is not in ``features``."""
    out = [(f"features.{name}", m) for name, m in model.features.named_children()]
    if until is None:
        return out
    names = [n for n, _ in out]
    if until not in names:
        resolve_layer(model, until)  # names the conv layers for an unknown name
        raise ValueError(f"layer {until!r} is not in model.features; conv layers are {', '.join(conv_layers(model))}")
    return out[: names.index(until) + 1]


def forward_features(model: FERNet, x: torch.Tensor, *, until: str | None = None, through: bool = True,
                     step: Callable[[str, nn.Module, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Run ``model.features`` on ``x`` module by module: the one walk every stage uses to run a
    network up to a layer (recording, deconvnet switches, single-face analysis, initialisation).

    Parameters
    ----------
    model : FERNet
    x : (B, 1, S, S) float32
        Normalised images (:func:`fercore.training.inputs.to_input`).
    until : str, optional
        Stop at this layer of ``features`` (dotted name); None runs all of ``features``.
    through : bool
        Return ``until``'s output (True) or its input (False).
    step : callable(name, module, x) -> tensor, optional
        Computes one module's output; default ``module(x)``, so forward hooks on the module fire.
        A caller passes its own to keep pooling switches or rescale weights on the way.

    Returns
    -------
    tensor
        The output (or input) of ``until``; the output of ``features`` when ``until`` is None.
    """
    step = step or (lambda name, m, t: m(t))
    for name, m in feature_modules(model, until):
        if name == until and not through:
            break
        x = step(name, m, x)
    return x


def layer_geometry(model: FERNet, name: str) -> LayerGeometry:
    """Exact receptive field, stride and offset of a layer of ``model.features``."""
    resolve_layer(model, name)
    rf, jump, start, size = 1, 1, 0.0, model.spec.in_size
    for child_name, m in model.features.named_children():
        if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            k, s, p = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding))
            d = getattr(m, "dilation", 1)
            d = d if isinstance(d, int) else d[0]
            k_eff = d * (k - 1) + 1
            start += ((k_eff - 1) / 2 - p) * jump
            rf += (k_eff - 1) * jump
            jump *= s
            span = size + 2 * p - k_eff
            if getattr(m, "ceil_mode", False):  # a last, partial window counts if it starts inside
                out = -(-span // s) + 1
                size = out - 1 if (out - 1) * s >= size + p else out
            else:
                size = span // s + 1
        if f"features.{child_name}" == name:
            return LayerGeometry(rf=rf, jump=jump, start=start, out_size=size)
    raise ValueError(f"layer {name!r} is not in model.features; conv layers are {', '.join(conv_layers(model))}")


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
