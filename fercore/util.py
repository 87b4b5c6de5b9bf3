"""Small shared helpers: stable hashes, atomic file writes, progress callbacks."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

#: A progress callback: ``progress(done, total, stage)``. The CLI turns it into tqdm bars, the
#: dashboard into ``st.progress``. ``total`` may change between calls when a stage starts.
Progress = Callable[[int, int, str], None]


def no_progress(done: int, total: int, stage: str) -> None:
    """The progress callback that reports nothing."""


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return _jsonable({k: getattr(obj, k) for k in obj.__dataclass_fields__})
    return obj


#: Field metadata of a config dataclass field added after the first release: :func:`config_dict`
#: leaves it out while it holds its default, so configs made before it keep their hash.
ADDED_LATER = {"omit_default": True}


def config_dict(obj) -> dict:
    """A config dataclass as a JSON-able dict for hashing and ``config.json``: every field, except
    the fields marked :data:`ADDED_LATER` that hold their default; tuples become lists and nested
    dataclasses with a ``to_dict`` give theirs."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.metadata.get("omit_default") and v == f.default:
            continue
        if hasattr(v, "to_dict"):
            v = v.to_dict()
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def stable_hash(obj, *arrays: np.ndarray) -> str:
    """SHA-256 hex digest of a JSON-able object (keys sorted) and the bytes of some arrays."""
    h = hashlib.sha256(json.dumps(_jsonable(obj), sort_keys=True).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        # the array's own buffer (no copy of an N-image array; the same bytes as tobytes())
        h.update(a.reshape(-1).view(np.uint8) if a.dtype != object else "\x00".join(map(str, a.ravel())).encode())
    return h.hexdigest()


def file_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    A reader never sees a half-written file, and a failure (or a kill) leaves the previous file
    untouched. The temporary name starts with a dot and ends in ``.tmp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates the file readable by its owner only; give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
