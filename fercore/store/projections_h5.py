"""Projections of top-K entries, computed on demand and cached beside ``records.h5``.

Recording writes the top-K lists, boxes, patches and per-image maxima at streaming speed; a
filter's projections (deconvnet or guided backpropagation, :mod:`fercore.recording.project`) are
computed the first time something asks for them and kept here::

    <run_dir>/projections/<records_id>-<method>/<layer>/f<filter>.h5   one filter: raw (K, P, P) and
                                                                       distinct (K, P, P) float16
    <run_dir>/projections/<records_id>-<method>/<layer>/top1.h5        every filter's first raw entry:
                                                                       top1 (F, P, P) float16

``records_id`` is a random id written into every new records file (a re-record makes a new one, so
the projections of earlier records are never read for new ones); ``method`` is the projection
method. Every file is written under a temporary name and renamed into place: a reader never sees
half a projection, a killed writer leaves the previous file, and two processes that compute the same
filter at once both write the same content, the last rename winning.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np

from fercore.util import atomic_path

__all__ = ["PROJECTIONS_DIR", "clear_stale_projections", "projections_dir", "read_filter_projections",
           "read_top1", "records_key", "write_filter_projections", "write_top1"]

PROJECTIONS_DIR = "projections"
_KIND = "projections"


def records_key(header: dict, mtime_ns: int | None = None) -> str:
    """What identifies one records file: its ``records_id`` (records written before there was one:
    their modification time)."""
    rid = str(header.get("records_id") or "")
    return rid[:16] if rid else f"m{int(mtime_ns or 0)}"


def projections_dir(run_dir, key: str, method: str) -> Path:
    """``<run_dir>/projections/<key>-<method>``."""
    return Path(run_dir) / PROJECTIONS_DIR / f"{key}-{method}"


def _filter_path(folder: Path, layer: str, f: int) -> Path:
    return folder / layer / f"f{int(f)}.h5"


def _write(path: Path, arrays: dict[str, np.ndarray], attrs: dict) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h:
        h.attrs["fercore_kind"] = _KIND
        for k, v in attrs.items():
            h.attrs[k] = v
        for k, v in arrays.items():
            h.create_dataset(k, data=np.asarray(v, dtype=np.float16))


def _read(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as h:
            if h.attrs.get("fercore_kind") != _KIND or any(n not in h for n in names):
                return None
            return {n: h[n][()].astype(np.float32) for n in names}
    except OSError:  # unreadable: computed again
        return None


def write_filter_projections(folder: Path, layer: str, f: int, raw: np.ndarray, distinct: np.ndarray, *,
                             attrs: dict | None = None) -> Path:
    """Store one filter's projections: ``raw`` and ``distinct`` (K, P, P) (the raw and distinct
    top-K lists, in list order; zeros where a list is padded)."""
    path = _filter_path(folder, layer, f)
    _write(path, {"raw": raw, "distinct": distinct}, {"layer": layer, "filter": int(f), **(attrs or {})})
    return path


def read_filter_projections(folder: Path, layer: str, f: int) -> dict[str, np.ndarray] | None:
    """``{"raw": (K, P, P), "distinct": (K, P, P)}`` float32 of one filter, or None when not computed."""
    return _read(_filter_path(folder, layer, f), ("raw", "distinct"))


def write_top1(folder: Path, layer: str, top1: np.ndarray, *, attrs: dict | None = None) -> Path:
    """Store every filter's first raw entry's projection, (F, P, P)."""
    path = folder / layer / "top1.h5"
    _write(path, {"top1": top1}, {"layer": layer, **(attrs or {})})
    return path


def read_top1(folder: Path, layer: str) -> np.ndarray | None:
    """(F, P, P) float32: every filter's first raw projection, or None when not computed."""
    got = _read(folder / layer / "top1.h5", ("top1",))
    return None if got is None else got["top1"]


def clear_stale_projections(run_dir, keep: str | None) -> int:
    """Remove the projections of earlier records (every folder but ``keep``, a folder name); the
    number removed."""
    root = Path(run_dir) / PROJECTIONS_DIR
    if not root.is_dir():
        return 0
    n = 0
    for d in root.iterdir():
        if d.is_dir() and d.name != keep:
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n

