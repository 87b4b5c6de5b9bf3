"""A network trained elsewhere as a run: ``python -m fercore import-model MODEL_FILE``.

:func:`import_model` reads the model file (:mod:`fercore.training.formats`), checks it against
the input spec the user gives (side, channels, per-channel mean and std, class names in output
order), and writes a run directory that every later stage and view takes like a trained run::

    runs/<name>-<hash8>/
        config.json     kind "imported": format, input spec, classes (as given and canonical),
                        conv layers in forward order, the model file's sha256
        model/<file>    the model file (and the factory's Python file), copied in

The run has no folds and no training curves (fercore does not know the data it was trained on);
``evaluate`` scores it on a FaceSet, ``record --data FILE`` records it. :func:`fercore.training.network.load_network` gives
its :class:`~fercore.training.network.Network`.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
from pathlib import Path

import torch

from fercore.data.facs import canonical_emotion
from fercore.store.layout import load_config, runs_dir
from fercore.training.formats import (
    ModelFileError,
    detect_format,
    first_lines,
    load_module,
    onnx_inputs,
    parse_factory,
)
from fercore.training.inputs import MEAN_STD, InputSpec
from fercore.training.network import example_input, module_order
from fercore.util import Progress, file_hash, no_progress, stable_hash, write_json

__all__ = ["IMPORTER_VERSION", "ModelFileError", "describe", "import_model", "map_classes"]

#: Bumped when an import of the same file would be written differently.
IMPORTER_VERSION = 1


def map_classes(names) -> tuple[list[str], list[str]]:
    """Class names as given -> (the run's class names: canonical emotion names where a name
    maps, :func:`fercore.data.facs.canonical_emotion`, the given name otherwise; the given names
    that map to no emotion, kept as they are and reported)."""
    out, unmapped = [], []
    for n in names:
        can = canonical_emotion(str(n))
        out.append(can or str(n).strip())
        if can is None:
            unmapped.append(str(n).strip())
    return out, unmapped


def _parse_classes(classes) -> list[str]:
    names = classes.split(",") if isinstance(classes, str) else list(classes or [])
    names = [str(n).strip() for n in names]
    if len(names) < 2 or any(not n for n in names):
        raise ValueError(f"--classes: expected the network's class names in output order, separated by commas "
                         f"(e.g. angry,disgust,fear,happy,sad,surprise,neutral), got {classes!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"--classes: {', '.join(dup)} given more than once; one name per output")
    return names


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.")[:60] or "model"


def _onnx_expectations(path: Path, spec: InputSpec) -> None:
    """An ONNX file states its input shape: say at once when --size or --channels differ."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return  # the loader gives the message
    inputs = onnx_inputs(model)
    if len(inputs) != 1 or len(inputs[0][1]) != 4:
        return
    dims = inputs[0][1]
    nhwc = dims[3] in (1, 3) and dims[1] not in (1, 3)
    c, h, w = (dims[3], dims[1], dims[2]) if nhwc else (dims[1], dims[2], dims[3])
    layout = "(N, H, W, C)" if nhwc else "(N, C, H, W)"
    if isinstance(c, int) and c > 0 and c != spec.channels:
        raise ModelFileError(f"{path}: the ONNX input {inputs[0][0]!r} {layout} has {c} channel(s), not "
                             f"--channels {spec.channels}; pass --channels {c}")
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 and (h, w) != (spec.size, spec.size):
        raise ModelFileError(f"{path}: the ONNX input {inputs[0][0]!r} {layout} is {h}x{w} pixels, not --size "
                             f"{spec.size}" + (f"; pass --size {h}" if h == w else "; fercore feeds square faces"))


def _inspect(module, spec: InputSpec, n_classes: int, path: Path) -> dict:
    """Run the network on random inputs: what it returns, its conv layers in forward order."""
    x = example_input(spec, 2)
    shape = f"({2}, {spec.channels}, {spec.size}, {spec.size})"
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as e:
        raise ModelFileError(f"{path}: the network does not run on a {shape} input (--size {spec.size} --channels "
                             f"{spec.channels}): {type(e).__name__}: {first_lines(str(e))}; give the input side and channels it "
                             "was trained with") from None
    if isinstance(out, tuple | list):
        shapes = ", ".join(str(tuple(o.shape)) if isinstance(o, torch.Tensor) else type(o).__name__ for o in out)
        raise ModelFileError(f"{path}: the network returns a {type(out).__name__} of {len(out)} ({shapes}); fercore "
                             "needs one tensor of class scores (N, classes): save a wrapper whose forward returns "
                             "only the class logits (e.g. `return self.net(x)[0]`)")
    if isinstance(out, dict):
        raise ModelFileError(f"{path}: the network returns a dict (keys {', '.join(map(str, out))}); fercore needs one "
                             "tensor of class scores (N, classes): save a wrapper whose forward returns only the "
                             "class logits (e.g. `return self.net(x)['logits']`)")
    if not isinstance(out, torch.Tensor):
        raise ModelFileError(f"{path}: the network returns a {type(out).__name__}, not a tensor of class scores")
    if out.dim() != 2 or out.shape[0] != 2:
        raise ModelFileError(f"{path}: the network returns shape {tuple(out.shape)} for a {shape} input; fercore "
                             "needs (N, classes) class scores (flatten the output, e.g. torch.flatten(x, 1))")
    if out.shape[1] != n_classes:
        raise ValueError(f"--classes names {n_classes} classes but the network has {out.shape[1]} outputs; give "
                         "one name per output, in the network's output order")
    if not torch.isfinite(out).all():
        raise ModelFileError(f"{path}: the network returns NaN or infinite scores on a random {shape} input; check "
                             "--mean and --std and that the file holds trained weights")
    x3 = example_input(spec, 3)
    try:
        with torch.no_grad():
            out3 = module(x3)
        ok = isinstance(out3, torch.Tensor) and tuple(out3.shape) == (3, n_classes)
    except Exception:
        ok = False
    if not ok:
        raise ModelFileError(f"{path}: the network runs on a batch of 2 but not of 3: its batch size is fixed; export "
                             "it with a dynamic batch dimension (torch.export: dynamic_shapes={'x': {0: "
                             "torch.export.Dim('batch')}}; torch.onnx.export: dynamic_axes={'input': {0: 'batch'}})")
    probs = bool((out >= 0).all() and torch.allclose(out.sum(1), torch.ones(2), atol=1e-4))
    order, calls = module_order(module, x)
    if not order:
        raise ModelFileError(f"{path}: no Conv2d layer runs in the network's forward pass; fercore records "
                             "convolutional layers")
    return {"outputs": "probabilities" if probs else "logits", "layers": order,
            "repeated": [n for n in order if calls[n] > 1],
            "n_parameters": int(sum(p.numel() for p in module.parameters()))}


def import_model(model_file, *, classes, size: int, channels: int = 1, mean=None, std=None,
                 name: str | None = None, factory: str | None = None, root=None,
                 progress: Progress | None = None) -> Path:
    """Import a network trained elsewhere as a run (cached by the file's content and the spec).

    Parameters
    ----------
    model_file : path
        TorchScript (``.pt``, ``.ts``), a ``torch.export`` program (``.pt2``), ONNX (``.onnx``),
        or a state dict (with ``factory``).
    classes : str or list of str
        The network's classes in output order (``angry,disgust,...``); mapped to canonical
        emotion names where they name one, kept as given otherwise.
    size : int
        Square input side in pixels.
    channels : {1, 3}
        3: the grey face is replicated for an RGB network.
    mean, std : list of float, optional
        Per channel (or one value for all), on pixel values scaled to [0, 1]; default 0 and 1.
    name : str, optional
        The run's name (default: the file's name); the directory is ``<name>-<hash8>``.
    factory : str, optional
        ``FILE.py:FUNCTION`` returning the ``nn.Module`` a state dict belongs to.
    root : path, optional
        Runs folder (default :func:`fercore.store.layout.runs_dir`).

    Returns
    -------
    Path
        The run directory.

    Raises
    ------
    ModelFileError
        The file (or factory) cannot be read as a network, or the network does not fit the spec;
        the message names the file and what to do.
    ValueError
        A bad argument (classes, size, channels, mean, std).
    """
    progress = progress or no_progress
    path = Path(model_file)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    names = _parse_classes(classes)
    spec = InputSpec(size=size, channels=channels, normalize=MEAN_STD, mean=mean, std=std)
    fmt = detect_format(path, factory=factory)
    if fmt == "onnx":
        _onnx_expectations(path, spec)
    fac_file = fac_func = None
    if factory is not None:
        fac_file, fac_func = parse_factory(factory)
    progress(0, 3, "import")
    module = load_module(path, fmt, factory=factory, example=example_input(spec, 2))
    progress(1, 3, "import")
    info = _inspect(module, spec, len(names), path)
    run_classes, unmapped = map_classes(names)
    sha = file_hash(path)
    key = {"version": IMPORTER_VERSION, "format": fmt, "sha256": sha, "input": spec.to_dict(), "classes": names,
           "factory": None if fac_file is None else [file_hash(fac_file), fac_func]}
    run_hash = stable_hash(key)
    root = Path(root) if root is not None else runs_dir()
    run_dir = root / f"{_slug(name or path.stem)}-{run_hash[:8]}"
    if _cached(run_dir, run_hash):
        progress(3, 3, "import")
        return run_dir
    model = {"arch": "imported", "format": fmt, "file": f"model/{path.name}", "sha256": sha,
             "source": str(path.resolve()), "in_size": spec.size, "channels": spec.channels,
             "n_classes": len(names), "outputs": info["outputs"], "n_parameters": info["n_parameters"],
             "factory": None, "factory_dir": None}
    if fac_file is not None:
        model.update(factory=f"model/{fac_file.name}:{fac_func}", factory_dir=str(fac_file.resolve().parent),
                     factory_sha256=file_hash(fac_file))
    cfg = {"kind": "imported", "run_hash": run_hash, "name": run_dir.name, "class_names": run_classes,
           "classes_given": names, "classes_unmapped": unmapped, "model": model, "input": spec.to_dict(),
           "normalize": MEAN_STD, "layers": info["layers"], "layers_repeated": info["repeated"],
           "protocol": "trained elsewhere: fercore does not know its training data, folds or protocol",
           "importer_version": IMPORTER_VERSION,
           "imported": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{run_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "model").mkdir(parents=True)
        _copy_model(path, fmt, tmp / "model" / path.name)
        if fac_file is not None:
            shutil.copy2(fac_file, tmp / "model" / fac_file.name)
        write_json(tmp / "config.json", cfg)
        progress(2, 3, "import")
        if run_dir.exists():  # a damaged or foreign directory of the same name
            shutil.rmtree(run_dir)
        os.replace(tmp, run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress(3, 3, "import")
    return run_dir


def _cached(run_dir: Path, run_hash: str) -> bool:
    try:
        cfg = load_config(run_dir)
    except (OSError, ValueError):
        return False
    return cfg.get("run_hash") == run_hash and (run_dir / cfg["model"]["file"]).is_file()


def _copy_model(path: Path, fmt: str, dest: Path) -> None:
    """Copy the model file in; an ONNX file whose weights lie in external data files is saved as
    one self-contained file."""
    if fmt == "onnx":
        import onnx
        from onnx.external_data_helper import uses_external_data

        head = onnx.load(str(path), load_external_data=False)
        if any(uses_external_data(t) for t in head.graph.initializer):
            onnx.save(onnx.load(str(path)), str(dest))
            return
    shutil.copy2(path, dest)


def describe(cfg: dict) -> str:
    """An imported run's network in words: format, parameters, input, classes."""
    m = cfg["model"]
    spec = InputSpec.from_dict(cfg["input"])
    n = m.get("n_parameters")
    size = f"{n / 1e6:.2f} M parameters" if n and n >= 1e5 else f"{n} parameters" if n else ""
    text = f"{m.get('format')} file {Path(m['file']).name}" + (f" ({size})" if size else "")
    text += f"; input {spec.describe()}; {len(cfg['layers'])} conv layers"
    if cfg.get("classes_unmapped"):
        text += "; classes kept as given (no emotion name): " + ", ".join(cfg["classes_unmapped"])
    return text

