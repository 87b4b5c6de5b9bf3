"""Forward hooks that always come off.

:class:`LayerCapture` registers forward hooks on named layers inside a ``with`` block and removes
them in ``finally`` (removal is safe to call twice), restores the model's ``training`` flag and
hands out detached outputs (or, for gradients, the outputs themselves). With ``stop=True`` the
forward pass ends as soon as every captured layer has run (:meth:`LayerCapture.run`): recording
never pays for the layers above the deepest one it records.
"""

from __future__ import annotations

import torch
from torch import nn

from fercore.training.models import resolve_layer

__all__ = ["LayerCapture", "hook_count"]


class _Stop(Exception):
    """Raised by a hook to end a forward pass once every captured layer has run."""


class LayerCapture:
    """Capture the outputs of some layers during forward passes.

    Parameters
    ----------
    model : nn.Module
    layers : list of str
        Dotted ``named_modules()`` names; an unknown name raises ValueError listing the conv layers.
    eval_mode : bool
        Put the model in eval mode inside the block (its flag is restored on exit).
    detach : bool
        Keep detached outputs (default); False keeps them in the autograd graph (Grad-CAM,
        guided backpropagation).
    stop : bool
        :meth:`run` ends the forward pass once every layer has run (the rest of the network is
        never computed).

    Examples
    --------
    >>> with LayerCapture(model, ["features.conv1"]) as cap:  # doctest: +SKIP
    ...     model(x)
    ...     a = cap.outputs["features.conv1"]  # (N, F, h, w), detached
    """

    def __init__(self, model: nn.Module, layers: list[str], *, eval_mode: bool = True, detach: bool = True,
                 stop: bool = False):
        self.model = model
        self.layers = list(layers)
        self.modules = {name: resolve_layer(model, name) for name in self.layers}
        self.eval_mode = eval_mode
        self.detach = detach
        self.stop = stop
        self.outputs: dict[str, torch.Tensor] = {}
        # an in-place op (e.g. ReLU(inplace=True)) after a hooked layer would overwrite its output
        self._clone = any(getattr(m, "inplace", False) for m in model.modules())
        self._handles: list = []
        self._was_training: bool | None = None

    def _hook(self, name: str):
        def fn(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"layer {name!r} returns a {type(output).__name__}, not a tensor; name a module "
                                 "whose output is a feature map")
            out = output.detach() if self.detach else output
            self.outputs[name] = out.clone() if self._clone else out
            if self.stop and len(self.outputs) == len(self.modules):
                raise _Stop

        return fn

    def run(self, x: torch.Tensor):
        """Call the model on ``x``; with ``stop`` the pass ends after the last captured layer
        (then None is returned, else the model's output). ``outputs`` holds the layers'."""
        self.outputs = {}
        try:
            return self.model(x)
        except _Stop:
            return None

    def __enter__(self) -> LayerCapture:
        self._was_training = self.model.training
        try:
            for name, m in self.modules.items():
                self._handles.append(m.register_forward_hook(self._hook(name)))
            if self.eval_mode:
                self.model.eval()
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove every hook and restore the training flag; safe to call more than once."""
        while self._handles:
            self._handles.pop().remove()
        if self._was_training is not None:
            self.model.train(self._was_training)
            self._was_training = None
        self.outputs = {}

    def __exit__(self, *exc) -> None:
        self.remove()


def hook_count(model: nn.Module) -> int:
    """Number of forward (pre-)hooks left on any module of ``model`` (0 after a clean exit)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
