"""Forward hooks that always come off.

:class:`LayerCapture` registers forward hooks on named layers inside a ``with`` block and removes
them in ``finally`` (removal is safe to call twice), restores the model's ``training`` flag and
hands out detached outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from fercore.training.models import resolve_layer

__all__ = ["LayerCapture", "hook_count"]


class LayerCapture:
    """Capture the outputs of some layers during forward passes.

    Parameters
    ----------
    model : nn.Module
    layers : list of str
        Dotted ``named_modules()`` names; an unknown name raises ValueError listing the conv layers.
    eval_mode : bool
        Put the model in eval mode inside the block (its flag is restored on exit).

    Examples
    --------
    >>> with LayerCapture(model, ["features.conv1"]) as cap:  # doctest: +SKIP
    ...     model(x)
    ...     a = cap.outputs["features.conv1"]  # (N, F, h, w), detached
    """

    def __init__(self, model: nn.Module, layers: list[str], *, eval_mode: bool = True):
        self.model = model
        self.layers = list(layers)
        self.modules = {name: resolve_layer(model, name) for name in self.layers}
        self.eval_mode = eval_mode
        self.outputs: dict[str, torch.Tensor] = {}
        # an in-place op (e.g. ReLU(inplace=True)) after a hooked layer would overwrite its output
        self._clone = any(getattr(m, "inplace", False) for m in model.modules())
        self._handles: list = []
        self._was_training: bool | None = None

    def _hook(self, name: str):
        def fn(module, inputs, output):
            out = output.detach()
            self.outputs[name] = out.clone() if self._clone else out

        return fn

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
