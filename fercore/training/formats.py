"""A network trained elsewhere, from its file, as an ``nn.Module`` whose layers are named modules.

The four formats a researcher brings (``docs/own_network.md``):

``torchscript``
    ``torch.jit.save`` (``.pt``, ``.ts``). TorchScript runs compiled code, so forward hooks on its
    submodules never fire; the program is converted to a ``torch.export`` program (PyTorch's
    ``TS2EPConverter``) and then to modules like the next format.
``export``
    ``torch.export.save`` (``.pt2``). The program's graph of ATen operators is turned into a
    ``torch.fx.GraphModule`` whose convolutions, batch norms, linear layers, ReLUs and max-pools
    are real ``nn.Conv2d`` ... modules named by their parameters' original dotted names
    (``layer1.0.conv1``), so ``named_modules()`` gives the names of the Python network.
``onnx``
    ``.onnx`` (a Keras or TensorFlow network exported with ``tf2onnx``, or PyTorch's
    ``torch.onnx.export``), converted with ``onnx2torch``; its modules are named after the ONNX
    nodes (``/block/conv1/Conv`` becomes ``block.conv1.Conv``). An NHWC input (Keras) is
    transposed inside the graph, so every format takes (N, C, S, S).
``state_dict``
    Weights saved with ``torch.save(model.state_dict(), ...)``, loaded with
    ``weights_only=True`` into the module a factory returns (``--factory FILE.py:FUNCTION``). A
    pickled whole module is refused: unpickling runs arbitrary code.

:func:`load_module` returns the module in eval mode on the CPU; :class:`ModelFileError` says
which file, what was expected, and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import operator
import pickle
import re
import sys
import types
import warnings
from pathlib import Path

import torch
from torch import fx, nn

__all__ = ["FORMATS", "ModelFileError", "detect_format", "first_lines", "load_module", "parse_factory"]

#: The formats :func:`load_module` reads.
FORMATS = ("torchscript", "export", "onnx", "state_dict")
#: The ONNX opset the converter is asked for when a model's own opset has operators it lacks.
ONNX_FALLBACK_OPSET = 17

_SAVE_HINT = ("save a state dict (torch.save(model.state_dict(), 'weights.pt')) and pass --factory FILE.py:FUNCTION "
              "(a function that builds the module), or save TorchScript (torch.jit.save(torch.jit.script(model), "
              "'model.pt'))")


class ModelFileError(ValueError):
    """A model file (or its factory) cannot be read as a network: what and what to do."""


# --------------------------------------------------------------------------------------------
# Which format


def detect_format(path: str | Path, *, factory: str | None = None) -> str:
    """The format of a model file: ``state_dict`` with a factory, else by suffix and content.

    Raises
    ------
    ModelFileError
        Not a model file fercore reads; a state dict without ``--factory``; a pickled module.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    if factory is not None:
        return "state_dict"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".pt2":
        return "export"
    head = path.read_bytes()[:4]
    if head[:2] != b"PK":  # TorchScript, .pt2 and torch.save files are zip archives
        if head[:1] == b"\x80":  # an old-style pickle
            _read_state_dict(path)  # raises the pickled-module message when it is one
            raise ModelFileError(f"{path}: a state dict in torch's legacy format; pass --factory FILE.py:FUNCTION "
                                 "(a function returning the module these weights belong to)")
        raise ModelFileError(f"{path}: not a model file fercore reads (TorchScript .pt/.ts, torch.export .pt2, "
                             f"ONNX .onnx, or a state dict with --factory FILE.py:FUNCTION)")
    names = _zip_names(path)
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("archive_format") or "/models/" in n and n.endswith(".json") for n in names):
        return "export"
    _read_state_dict(path)  # a pickled module raises here with its message
    raise ModelFileError(f"{path}: a state dict (weights only): fercore needs the code that builds the network; "
                         "pass --factory FILE.py:FUNCTION (a Python file and a function in it that returns the "
                         "nn.Module these weights belong to)")


def _zip_names(path: Path) -> list[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelFileError(f"{path}: not a readable model archive ({e}); is the file complete?") from None


# --------------------------------------------------------------------------------------------
# Loading


def load_module(path: str | Path, fmt: str, *, factory: str | None = None, example: torch.Tensor | None = None,
                factory_dir: str | Path | None = None) -> nn.Module:
    """A model file as an ``nn.Module`` in eval mode on the CPU.

    Parameters
    ----------
    path : path
    fmt : one of :data:`FORMATS`
    factory : str, optional
        ``FILE.py:FUNCTION`` (``state_dict`` only).
    example : (B, C, S, S) float32, optional
        An input the network takes; needed to convert TorchScript (its shapes are traced).
    factory_dir : path, optional
        A folder put on ``sys.path`` while the factory file runs (the original file's folder,
        when the factory imports modules beside it).

    Raises
    ------
    ModelFileError
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise ModelFileError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx":
        module = _onnx_module(path)
    elif fmt == "export":
        module = _export_module(path)
    elif fmt == "torchscript":
        if example is None:
            raise ValueError("load_module: TorchScript needs an example input to convert")
        module = _torchscript_module(path, example)
    else:
        if factory is None:
            raise ModelFileError(f"{path}: a state dict needs --factory FILE.py:FUNCTION")
        module = _factory_module(path, factory, factory_dir=factory_dir)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


# ---------------------------------------------------------------------------- state dict + factory

def parse_factory(factory: str) -> tuple[Path, str]:
    """``FILE.py:FUNCTION`` -> (file, function name); ModelFileError naming the form otherwise."""
    text = str(factory)
    file, sep, func = text.rpartition(":")
    if not sep or not file.endswith(".py") or not func.isidentifier():
        raise ModelFileError(f"--factory {text!r}: expected FILE.py:FUNCTION, a Python file and the name of a "
                             "function in it that returns the nn.Module (e.g. nets.py:build_resnet)")
    path = Path(file)
    if not path.is_file():
        raise ModelFileError(f"--factory {text!r}: no such file {path}")
    return path, func


def _factory_module(weights: Path, factory: str, *, factory_dir=None) -> nn.Module:
    file, func = parse_factory(factory)
    net = _call_factory(file, func, factory, factory_dir)
    state = _read_state_dict(weights)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that differ
        raise ModelFileError(f"{weights}: the weights do not fit the module {func}() builds: "
                             f"{first_lines(str(e), 4)}; build the same architecture they were saved from") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        what = []
        if missing:
            what.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            what.append(f"{len(unexpected)} not in the module (e.g. {', '.join(unexpected[:3])})")
        raise ModelFileError(f"{weights}: the state dict does not match the module {func}() builds: "
                             f"{'; '.join(what)}; build the architecture the weights were saved from")
    return net


def _call_factory(file: Path, func: str, factory: str, factory_dir) -> nn.Module:
    name = "fercore_factory_" + hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"--factory {factory!r}: {file} cannot be loaded as a Python module")
    mod = importlib.util.module_from_spec(spec)
    extra = [str(Path(d).resolve()) for d in (factory_dir, file.parent) if d is not None]
    added = [d for d in dict.fromkeys(extra) if d not in sys.path]
    sys.path[:0] = added
    try:
        try:
            spec.loader.exec_module(mod)
        except Exception as e:
            raise ModelFileError(f"--factory {factory!r}: running {file} raised {type(e).__name__}: {e}; fix the file "
                                 "so that it runs on its own (python " + str(file) + ")") from None
        fn = getattr(mod, func, None)
        if not callable(fn):
            have = sorted(k for k, v in vars(mod).items() if callable(v) and getattr(v, "__module__", "") == name)
            raise ModelFileError(f"--factory {factory!r}: {file} has no function {func!r}"
                                 + (f"; it defines {', '.join(have)}" if have else ""))
        try:
            net = fn()
        except Exception as e:
            raise ModelFileError(f"--factory {factory!r}: calling {func}() raised {type(e).__name__}: {e}; the "
                                 "function must build the module with no arguments") from None
    finally:
        for d in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(d)
    if not isinstance(net, nn.Module):
        raise ModelFileError(f"--factory {factory!r}: {func}() returned {type(net).__name__}, not a torch.nn.Module")
    return net


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save``, read with ``weights_only=True`` (no code runs);
    a checkpoint dict holding one under ``state_dict`` / ``model`` / ... is unwrapped, and a
    ``module.`` prefix (DataParallel) is taken off."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "GLOBAL" in text or "global" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what = f" ({found.group(1)})" if found else ""
            raise ModelFileError(f"{path}: holds a pickled Python object{what}, e.g. a whole module saved with "
                                 f"torch.save(model); fercore does not unpickle code. Instead {_SAVE_HINT}") from None
        raise ModelFileError(f"{path}: not a readable state dict ({first_lines(text, 1)})") from None
    except Exception as e:  # torch raises many types for a file that is not its own
        raise ModelFileError(f"{path}: not a model file fercore reads ({type(e).__name__}: {first_lines(str(e), 1)}); "
                             "expected TorchScript, a .pt2 program, ONNX, or a state dict with --factory") from None
    if isinstance(obj, dict) and not _tensor_dict(obj):
        for key in ("state_dict", "model_state_dict", "model", "net", "weights"):
            if isinstance(obj.get(key), dict) and _tensor_dict(obj[key]):
                obj = obj[key]
                break
    if not (isinstance(obj, dict) and obj and _tensor_dict(obj)):
        raise ModelFileError(f"{path}: holds a {type(obj).__name__}, not a state dict (names -> tensors); "
                             f"{_SAVE_HINT}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _tensor_dict(d: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def first_lines(text: str, n: int = 1) -> str:
    """The first ``n`` non-empty lines of an error's text, joined (at most 400 characters)."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return " ".join(lines[:n])[:400]


# ------------------------------------------------------------------------------- TorchScript

def _torchscript_module(path: Path, example: torch.Tensor) -> nn.Module:
    """TorchScript -> a ``torch.export`` program (PyTorch's converter) -> named modules; when that
    conversion fails or changes the outputs, TorchScript -> ONNX (PyTorch's TorchScript-based
    exporter, batch norms kept) -> onnx2torch. Either result is checked against the program."""
    try:
        ts = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ModelFileError(f"{path}: not a TorchScript file ({first_lines(str(e), 1)})") from None
    ts.eval()
    with torch.no_grad():
        want = ts(example)
    reasons = []
    for route in (_ts_via_export, _ts_via_onnx):
        try:
            gm = route(ts, example)
        except ModelFileError as e:
            reasons.append(str(e))
            continue
        except Exception as e:
            reasons.append(f"{type(e).__name__}: {first_lines(str(e), 2)}")
            continue
        with torch.no_grad():
            got = gm(example)
        if not (isinstance(want, torch.Tensor) and isinstance(got, torch.Tensor)):
            return gm  # the import's own check names a tuple or dict output
        err = float((want - got).abs().max()) if want.shape == got.shape else float("inf")
        if err <= 1e-4 * (1.0 + float(want.abs().max())):
            return gm
        reasons.append(f"the converted network's outputs differ from the program's by {err:.3g}")
    raise ModelFileError(f"{path}: this TorchScript program could not be converted into a graph fercore can look "
                         f"inside ({'; '.join(reasons)}); export it as ONNX (torch.onnx.export) or pass the state "
                         "dict with --factory instead")


def _ts_via_export(ts, example: torch.Tensor) -> nn.Module:
    from torch._export.converter import TS2EPConverter

    with warnings.catch_warnings(), _quiet_export_logs():
        warnings.simplefilter("ignore")
        ep = TS2EPConverter(ts, (example,)).convert()
    return modularize(ep)


def _ts_via_onnx(ts, example: torch.Tensor) -> nn.Module:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fercore-ts-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "program.onnx"
        torch.onnx.export(ts, (example,), str(path), dynamo=False, opset_version=ONNX_FALLBACK_OPSET,
                          input_names=["input"], dynamic_axes={"input": {0: "batch"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        return _onnx_module(path)


@contextlib.contextmanager
def _quiet_export_logs():
    """torch.export logs shape specialisations as warnings; they are expected here."""
    import logging

    loggers = [logging.getLogger(n) for n in ("torch._export", "torch.export", "torch._dynamo", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


# ------------------------------------------------------------------------------ torch.export

def _export_module(path: Path) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.load(str(path))
    except Exception as e:
        raise ModelFileError(f"{path}: not a torch.export program ({type(e).__name__}: {first_lines(str(e), 1)}); "
                             "save one with torch.export.save(torch.export.export(model, (x,)), 'model.pt2')") from None
    return modularize(ep)


_aten = torch.ops.aten


def modularize(ep) -> fx.GraphModule:
    """An exported program (ATen graph) -> a GraphModule whose parametrised layers are modules.

    Convolutions (2-d, not transposed), batch norms, linear layers, ReLUs and max-pools become
    ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Linear``, ``nn.ReLU`` and ``nn.MaxPool2d`` modules
    (the same arithmetic), named by their parameters' dotted names (``block.conv1`` for
    ``block.conv1.weight``) or, without parameters, by the module they were called from; other
    operators stay functions of the graph. The program's input-shape guards are dropped and a
    batch size fixed at export is freed where a reshape spells it out, so any batch runs.
    """
    gm = ep.module()
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("_guards") and not node.users:
            graph.erase_node(node)
    tensors = dict(gm.named_parameters(remove_duplicate=False))
    tensors.update(dict(gm.named_buffers(remove_duplicate=False)))
    modules: dict[str, nn.Module] = {}

    def fqn(arg) -> str | None:
        return arg.target if isinstance(arg, fx.Node) and arg.op == "get_attr" else None

    def owner(*args) -> str | None:
        for a in args:
            name = fqn(a)
            if name and "." in name:
                return name.rsplit(".", 1)[0]
        return None

    def tensor(arg):
        return None if arg is None else tensors.get(fqn(arg))

    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        made = _as_module(node, tensor, owner)
        if made is None:
            continue
        name, module, replace = made
        name = _unique(name or _stack_name(node), modules)
        modules[name] = module
        with graph.inserting_before(node):
            new = graph.create_node("call_module", name, (node.args[0],))  # the module joins the new root below
        new.meta = dict(node.meta)
        olds = replace(node)
        for old in olds:
            old.replace_all_uses_with(new)
        for old in reversed(olds):
            if not old.users:
                graph.erase_node(old)
    for node in list(graph.nodes):  # parameters now held by modules
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    _free_batch(graph)
    owners = {**modules}
    for node in graph.nodes:
        if node.op == "get_attr":
            owners[node.target] = tensors[node.target] if node.target in tensors else _get_path(gm, node.target)
    out = fx.GraphModule(owners, graph)
    out.graph.lint()
    out.recompile()
    return out.eval()


def _as_module(node: fx.Node, tensor, owner):
    """(name or None, module, nodes it replaces) for a node that becomes a module; else None."""
    t, a = node.target, list(node.args)
    kw = dict(node.kwargs)
    one = lambda n: [n]  # noqa: E731
    if t in (_aten.conv2d.default, _aten.conv2d.padding, _aten.convolution.default):
        if t is _aten.convolution.default:
            a += [None] * (9 - len(a))
            x, w, b, stride, padding, dilation, transposed, _, groups = a[:9]
            if transposed:
                return None
        else:
            a += [None] * (7 - len(a))
            x, w, b, stride, padding, dilation, groups = a[:7]
        weight, bias = tensor(w), tensor(b) if b is not None else None
        if weight is None or weight.dim() != 4 or (b is not None and bias is None):
            return None
        groups = int(groups or 1)
        conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                         stride=tuple(stride or (1, 1)), padding=padding if isinstance(padding, str) else
                         tuple(padding or (0, 0)), dilation=tuple(dilation or (1, 1)), groups=groups,
                         bias=bias is not None)
        conv.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        if bias is not None:
            conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        return owner(w), conv, one
    if t in (_aten.batch_norm.default, _aten._native_batch_norm_legit_no_training.default):
        if t is _aten.batch_norm.default:
            a += [None] * (9 - len(a))
            x, w, b, mean, var, _, momentum, eps = a[:8]
        else:
            x, w, b, mean, var, momentum, eps = a[:7]
            if any(u.op != "call_function" or u.target is not operator.getitem or u.args[1] != 0
                   for u in node.users):
                return None
        rm, rv = tensor(mean), tensor(var)
        weight, bias = tensor(w), tensor(b)
        val = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
        if rm is None or rv is None or (w is not None and weight is None) or (b is not None and bias is None):
            return None
        dims = getattr(val, "ndim", 4)
        cls = {4: nn.BatchNorm2d, 3: nn.BatchNorm1d, 2: nn.BatchNorm1d}.get(dims)
        if cls is None:
            return None
        bn = cls(rm.shape[0], eps=float(eps), momentum=float(momentum) if momentum is not None else 0.1,
                 affine=weight is not None)
        with torch.no_grad():
            bn.running_mean.copy_(rm)
            bn.running_var.copy_(rv)
            if weight is not None:
                bn.weight.copy_(weight)
                bn.bias.copy_(bias if bias is not None else torch.zeros_like(weight))
        users = (lambda n: [n]) if t is _aten.batch_norm.default else (lambda n: [*n.users, n])
        return owner(w, mean), bn, users
    if t is _aten.linear.default:
        a += [None] * (3 - len(a))
        x, w, b = a[:3]
        weight, bias = tensor(w), tensor(b) if b is not None else None
        if weight is None or weight.dim() != 2 or (b is not None and bias is None):
            return None
        lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        lin.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        if bias is not None:
            lin.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        return owner(w), lin, one
    if t in (_aten.relu.default, _aten.relu_.default) and not kw:
        return None, nn.ReLU(), one
    if t is _aten.max_pool2d.default and not kw:
        a += [None] * (6 - len(a))
        x, k, s, p, d, ceil = a[:6]
        k = tuple(k)
        return None, nn.MaxPool2d(k, tuple(s) if s else k, tuple(p or (0, 0)), tuple(d or (1, 1)),
                                  ceil_mode=bool(ceil)), one
    return None


def _stack_name(node: fx.Node) -> str:
    """A name for a parameter-free module: the module the operator was called from (the
    ``nn.ReLU`` itself, or ``<parent>.<op>`` for a functional call), else the node's name."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, cls = list(stack.values())[-1]
        cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", "")
        leaf = str(cls_name).rsplit(".", 1)[-1]
        if path and leaf in ("ReLU", "MaxPool2d"):
            return str(path)
        if path:
            return f"{path}.{node.name}"
    return node.name


def _unique(name: str, taken: dict) -> str:
    """``name``, or ``name_2`` ... when a module already uses it, or it would be a parent or a
    child of one (a module cannot be both a layer and a container here)."""
    base, i = name, 1

    def clash(n: str) -> bool:
        return any(k == n or k.startswith(n + ".") or n.startswith(k + ".") for k in taken)

    while clash(name):
        i += 1
        name = f"{base}_{i}"
    return name


def _get_path(root: nn.Module, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _free_batch(graph: fx.Graph) -> None:
    """Reshapes that spell out a batch size fixed at export take any batch (-1)."""
    batch = None
    for node in graph.nodes:
        if node.op == "placeholder":
            val = node.meta.get("val")
            if val is not None and getattr(val, "ndim", 0) >= 1 and isinstance(val.shape[0], int):
                batch = int(val.shape[0])
            break
    if batch is None:
        return
    reshapes = {_aten.view.default, _aten.reshape.default, _aten._unsafe_view.default, _aten.expand.default}
    for node in graph.nodes:
        if node.op != "call_function" or node.target not in reshapes or len(node.args) < 2:
            continue
        shape = node.args[1]
        src = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
        if (isinstance(shape, list | tuple) and shape and all(isinstance(s, int) for s in shape)
                and shape[0] == batch and -1 not in shape[1:] and src is not None
                and getattr(src, "ndim", 0) >= 1 and src.shape[0] == batch):
            node.args = (node.args[0], [-1, *shape[1:]], *node.args[2:])


# ------------------------------------------------------------------------------------- ONNX

def _onnx2torch():
    """``onnx2torch.convert``. onnx2torch imports torchvision at import time, for its NMS and
    RoIAlign converters only (no classification CNN has those operators); PyPI's torchvision does
    not import beside the CPU build of torch, so a placeholder stands in for it during the import
    and those two converters raise if a model ever needs them."""
    def drop(prefix):
        for key in [k for k in sys.modules if k == prefix or k.startswith(prefix + ".")]:
            del sys.modules[key]

    # onnx2torch's Slice indexes with a list (a deprecation warning on every forward pass)
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
    try:
        from onnx2torch import convert

        return convert
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "onnx2torch":
            raise ModelFileError("ONNX import needs the onnx2torch package: pip install --no-deps "
                                 "-r requirements-onnx.txt (README, Start)") from None
        if not (e.name and e.name.split(".")[0] == "torchvision"):
            raise
    except (RuntimeError, ImportError, AttributeError):
        pass  # a torchvision that is installed but does not import
    drop("onnx2torch")
    drop("torchvision")
    placeholder = types.ModuleType("torchvision")
    placeholder.ops = types.ModuleType("torchvision.ops")

    def missing(*args, **kwargs):
        raise NotImplementedError("this ONNX operator needs torchvision, which fercore does not use")

    placeholder.ops.nms = placeholder.ops.box_convert = placeholder.ops.roi_align = missing
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = placeholder, placeholder.ops
    try:
        from onnx2torch import convert
    finally:
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)
    return convert


def _onnx_module(path: Path) -> nn.Module:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise ModelFileError(f"{path}: not a readable ONNX file ({type(e).__name__}: {first_lines(str(e), 1)})") \
            from None
    inputs = onnx_inputs(model)
    if len(inputs) != 1:
        raise ModelFileError(f"{path}: the ONNX graph takes {len(inputs)} inputs ({', '.join(n for n, _ in inputs)}); "
                             "fercore feeds one image batch: export the network with one input")
    convert = _onnx2torch()
    try:
        gm = _convert(convert, model)
    except NotImplementedError as first:
        opset = _opset(model)
        if opset is not None and opset > ONNX_FALLBACK_OPSET:
            try:
                down = onnx.version_converter.convert_version(model, ONNX_FALLBACK_OPSET)
                gm = _convert(convert, down)
            except Exception:
                raise ModelFileError(_unsupported(path, first, opset)) from None
        else:
            raise ModelFileError(_unsupported(path, first, opset)) from None
    except Exception as e:
        raise ModelFileError(f"{path}: onnx2torch could not convert the graph ({type(e).__name__}: "
                             f"{first_lines(str(e), 2)})") from None
    gm = _dotted_names(gm)
    if _nhwc(inputs[0][1]):
        _transpose_input(gm)
    return gm.eval()


def _convert(convert, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert(model)


def _opset(model) -> int | None:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return None


def _unsupported(path: Path, err: Exception, opset: int | None) -> str:
    text = str(err)
    found = re.search(r"domain='([^']*)', operation_type='([^']+)', version=(\d+)", text)
    what = (f"the operator {found.group(2)}" + (f" of domain {found.group(1)}" if found.group(1) else "")
            + f" (version {found.group(3)})") if found else f"an operator ({first_lines(text, 1)})"
    return (f"{path}: {what} has no converter in onnx2torch, so fercore cannot run this graph in PyTorch"
            + (f" (also after converting opset {opset} to {ONNX_FALLBACK_OPSET})" if opset and opset > ONNX_FALLBACK_OPSET
               else "")
            + f"; re-export with opset {ONNX_FALLBACK_OPSET} and standard operators (torch.onnx.export(..., "
              f"opset_version={ONNX_FALLBACK_OPSET}), tf2onnx --opset {ONNX_FALLBACK_OPSET}), or bring the network "
              "as TorchScript or a state dict with --factory")


def onnx_inputs(model) -> list[tuple[str, list]]:
    """The graph's real inputs (initializers left out): (name, dims), a dim an int or a name."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in inp.type.tensor_type.shape.dim]
        out.append((inp.name, dims))
    return out


def _nhwc(dims: list) -> bool:
    """An image input laid out (N, H, W, C) (Keras' default) rather than (N, C, H, W)."""
    return len(dims) == 4 and dims[3] in (1, 3) and dims[1] not in (1, 3)


def _dotted_names(gm: fx.GraphModule) -> fx.GraphModule:
    """onnx2torch names modules after ONNX nodes (``block/conv1/Conv``); use dotted names
    (``block.conv1.Conv``), the form of ``named_modules()`` (names that would clash keep ``_``)."""
    targets = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    dotted = {t: t.strip("/").replace("/", ".") or t for t in targets}
    names = set(dotted.values())
    if len(names) != len(targets) or any(a != b and b.startswith(a + ".") for a in names for b in names) \
            or any("." in t for t in targets):
        dotted = {t: re.sub(r"[^0-9A-Za-z_]", "_", t.strip("/")) or t for t in targets}
    owners = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            owners[dotted[node.target]] = gm.get_submodule(node.target)
            node.target = dotted[node.target]
        elif node.op == "get_attr":
            owners[node.target] = _get_path(gm, node.target)
    out = fx.GraphModule(owners, gm.graph)
    out.recompile()
    return out


def _transpose_input(gm: fx.GraphModule) -> None:
    """Make an NHWC graph take NCHW: permute its input inside the graph (no wrapper module, so
    the layer names stay those of the ONNX file)."""
    graph = gm.graph
    ph = next(n for n in graph.nodes if n.op == "placeholder")
    with graph.inserting_after(ph):
        perm = graph.call_method("permute", (ph, 0, 2, 3, 1))
    for user in list(ph.users):
        if user is not perm:
            user.replace_input_with(ph, perm)
    gm.recompile()
