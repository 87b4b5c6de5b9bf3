"""Any run's network behind one interface: trained here, or trained elsewhere and imported.

Every stage that runs a run's network (recording, evaluation, an uploaded face, Grad-CAM, the
null networks) asks :func:`load_network` for a :class:`Network`: the module (eval mode, CPU), the
:class:`~fercore.training.inputs.InputSpec` that turns stored faces into its input, its class
names and its layers (every ``Conv2d`` by its ``named_modules()`` name, input to output). The
project's own :class:`~fercore.training.models.FERNet` keeps its fast paths where a stage has one
(``isinstance(net.module, FERNet)``); everything else takes the one walk over any module: forward
hooks on named modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fercore.store.layout import is_imported, is_null_dir, load_config, trained_folds
from fercore.training.formats import ModelFileError, first_lines, load_module
from fercore.training.inputs import InputSpec

__all__ = ["Network", "check_layers", "example_input", "fernet_layers", "load_imported", "load_network",
           "module_layers", "module_order"]

#: Seed of the random inputs a network is checked and converted with.
_EXAMPLE_SEED = 0


@dataclass
class Network:
    """A run's network and how to feed it.

    Attributes
    ----------
    module : nn.Module
        In eval mode; parameters without gradients for imported networks.
    inputs : InputSpec
    class_names : tuple of str
        The run's class names, in output order.
    layers : tuple of str
        The conv layers (``Conv2d`` modules), in the order the forward pass runs them.
    imported : bool
        Trained elsewhere (``import-model``).
    outputs : {"logits", "probabilities"}
        What the module returns (an imported network may end in a softmax).
    fold : int
        The weights' round (-1: an imported network's own weights).
    weights : str
        Where the weights came from, relative to the run (``weights/fold0.pt``, ``model/net.onnx``).
    """

    module: nn.Module
    inputs: InputSpec
    class_names: tuple[str, ...]
    layers: tuple[str, ...]
    imported: bool = False
    outputs: str = "logits"
    fold: int = 0
    weights: str = ""

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) class scores on the logit scale (log-probabilities for a network that outputs
        probabilities), so a softmax of them gives the network's probabilities."""
        out = self.module(x)
        if self.outputs == "probabilities":
            return out.clamp_min(1e-12).log()
        return out


def module_order(module: nn.Module, x: torch.Tensor, names: list[str] | None = None) -> tuple[list[str], dict]:
    """The modules a forward pass of ``x`` runs, in the order they first run, and how often each ran.

    Parameters
    ----------
    module : nn.Module
    x : tensor
        An input the module takes.
    names : list of str, optional
        The dotted names to watch; default every ``Conv2d``.

    Returns
    -------
    order : list of str
        The watched modules that ran, by their first call.
    calls : dict of str to int
        How many times each watched module ran (a module run twice has no single output map).
    """
    named = dict(module.named_modules())
    if names is None:
        names = [n for n, m in named.items() if isinstance(m, nn.Conv2d)]
    calls: dict[str, int] = {}
    order: list[str] = []
    handles = []

    def watch(name):
        def hook(mod, inputs, output):
            if name not in calls:
                order.append(name)
            calls[name] = calls.get(name, 0) + 1
        return hook

    was = module.training
    try:
        for name in names:
            handles.append(named[name].register_forward_hook(watch(name)))
        module.eval()
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
        module.train(was)
    return order, calls


def check_layers(net: Network, layers) -> list[str]:
    """The layers to record: ``net.layers`` when None or empty; else the named modules, checked
    (:func:`fernet_layers` for a network trained here, :func:`module_layers` for any other) and put
    in forward order."""
    from fercore.training.models import FERNet

    if layers is None or len(layers) == 0:
        return list(net.layers)
    if isinstance(net.module, FERNet):
        return fernet_layers(net.module, layers)
    return module_layers(net.module, layers, net.inputs)


def fernet_layers(model, layers) -> list[str]:
    """A FERNet's layers to record: its conv layers (all when None), in order; a ValueError names
    an unknown layer or one that is not a conv layer, listing the conv layers."""
    from fercore.training.models import conv_layers, resolve_layer

    convs = conv_layers(model)
    if layers is None or len(layers) == 0:
        return convs
    out = []
    for name in layers:
        resolve_layer(model, name)
        if name not in convs:
            raise ValueError(f"layers: {name!r} is not a conv layer; conv layers are {', '.join(convs)}")
        if name not in out:
            out.append(name)
    return sorted(out, key=convs.index)


def module_layers(module: nn.Module, layers, spec: InputSpec) -> list[str]:
    """Any network's layers to record: the named modules (every ``Conv2d`` when None), in the order
    the forward pass runs them. A ValueError names an unknown module (listing the conv layers), one
    that does not run, or one that runs more than once per pass (it has no single output map)."""
    from fercore.training.models import resolve_layer

    names = None if layers is None or len(layers) == 0 else list(dict.fromkeys(layers))
    for name in names or ():
        resolve_layer(module, name)
    dev = next(iter(module.parameters()), torch.zeros(0)).device
    order, calls = module_order(module, torch.zeros(2, spec.channels, spec.size, spec.size, device=dev), names)
    if names is None:
        if not order:
            raise ValueError("layers: no Conv2d layer runs in the network's forward pass")
        return order
    for name in names:
        if name not in calls:
            raise ValueError(f"layers: {name!r} does not run in the forward pass (no output to record)")
        if calls[name] > 1:
            raise ValueError(f"layers: {name!r} runs {calls[name]} times in one forward pass, so it has no single "
                             "output map; name a module that runs once")
    return order


def load_network(run_dir, fold: int | None = None) -> Network:
    """The network of a run (or of a null network's directory), ready to run on the CPU.

    Parameters
    ----------
    run_dir : path
    fold : int, optional
        A trained run's round (default: fold 0, else the lowest trained round). Ignored for an
        imported network (it has one set of weights).

    Returns
    -------
    Network
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if is_imported(cfg):
        return load_imported(run_dir)
    from fercore.training.models import conv_layers, load_model

    folds = trained_folds(run_dir)
    if fold is None and folds:
        fold = 0 if 0 in folds else folds[0]
    model = load_model(run_dir, fold=fold)
    spec = InputSpec(size=int(model.spec.in_size), channels=1, normalize=cfg.get("normalize") or "standardize")
    names = tuple(cfg.get("class_names") or cfg["faceset"]["class_names"])
    return Network(module=model, inputs=spec, class_names=names, layers=tuple(conv_layers(model)), imported=False,
                   fold=int(fold if fold is not None else 0), weights=f"weights/fold{fold}.pt")


def example_input(spec: InputSpec, batch: int) -> torch.Tensor:
    """A seeded random (batch, channels, size, size) input of the spec (to check, trace, convert)."""
    g = torch.Generator().manual_seed(_EXAMPLE_SEED + batch)
    return torch.randn(batch, spec.channels, spec.size, spec.size, generator=g)


def _model_root(run_dir: Path) -> Path:
    """The directory holding ``model/``: the run's, or for a null network its run's."""
    return run_dir.parent.parent if is_null_dir(run_dir) else run_dir


def load_imported(run_dir) -> Network:
    """The imported network of a run (or of its null network: the same module with the null's
    weights, ``weights/fold<t>.pt``), in eval mode on the CPU."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    m = cfg["model"]
    base = _model_root(run_dir)
    spec = InputSpec.from_dict(cfg["input"])
    path = base / m["file"]
    if not path.is_file():
        raise ModelFileError(f"{path}: the run's model file is missing; import the network again "
                             f"(python -m fercore import-model ...)")
    factory = None
    if m.get("factory"):
        rel, func = str(m["factory"]).rsplit(":", 1)
        factory = f"{base / rel}:{func}"
    module = load_module(path, m["format"], factory=factory, example=example_input(spec, 2),
                         factory_dir=m.get("factory_dir"))
    weights = m["file"]
    folds = trained_folds(run_dir) if is_null_dir(run_dir) else []
    if folds:
        wpath = run_dir / "weights" / f"fold{folds[0]}.pt"
        try:
            state = torch.load(wpath, map_location="cpu", weights_only=True)
            module.load_state_dict(state)
        except Exception as e:
            raise ModelFileError(f"{wpath}: unreadable null weights ({type(e).__name__}: {first_lines(str(e))}); delete "
                                 f"{run_dir} and build the null again") from None
        weights = f"weights/fold{folds[0]}.pt"
    return Network(module=module, inputs=spec, class_names=tuple(cfg["class_names"]), layers=tuple(cfg["layers"]),
                   imported=True, outputs=m.get("outputs", "logits"), fold=-1, weights=weights)
