"""Activation records <-> HDF5 (``records.h5``). The layout is documented in ``docs/records.md``.

Writers build the whole file under a temporary name and rename it into place
(:func:`fercore.util.atomic_path`), so a reader never sees a partial file and a failed write
leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import h5py
import numpy as np

from fercore.store._h5 import open_checked
from fercore.util import atomic_path

__all__ = [
    "RECORDS_SCHEMA",
    "STATS_VERSION",
    "RecordsFileError",
    "has_layer_array",
    "read_analysis_attrs",
    "read_layer_array",
    "read_layer_group",
    "read_records_header",
    "write_records",
    "write_stats",
]

#: Version of the records.h5 layout; bump when a reader of the old layout would misread the new.
RECORDS_SCHEMA = 2
#: Version of the analysis ``analyze`` stores in a records file (``/analysis`` attribute
#: ``stats_version``); a reader of another version asks for ``analyze`` again.
STATS_VERSION = 3

#: Header attributes stored as JSON text.
_JSON_ATTRS = ("layers", "class_names", "au_ids", "meta", "input")


class RecordsFileError(ValueError):
    """A records file is missing, unreadable or not laid out as expected."""


def write_records(path: str | os.PathLike, *, attrs: dict, data: dict[str, np.ndarray],
                  layers: dict[str, dict]) -> None:
    """Write a complete records file (temporary name, then rename).

    Parameters
    ----------
    path : path
        Destination, normally ``<run_dir>/records.h5``.
    attrs : dict
        Root attributes: ``run``, ``run_dir``, ``faceset_path``, ``faceset_hash``, ``fold``,
        ``k``, ``n``, ``image_size``, ``normalize``, ``layers`` (list), ``class_names``,
        ``au_ids`` (list), ``batch_size``. ``schema_version``, ``fercore_kind`` and a new random
        ``records_id`` (what the projection cache is keyed by) are added.
    data : dict of str to array
        Per-image arrays of the recorded FaceSet, stored under ``/data`` (labels (N,), aus (N, A),
        groups (N,) str, landmarks (N, 68, 2) optional).
    layers : dict of layer name to dict
        ``{"attrs": {...}, "max_act": (N, F) float16, "topk": {name: array},
        "topk_distinct": {name: array}}`` per layer.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["fercore_kind"] = "records"
        f.attrs["schema_version"] = RECORDS_SCHEMA
        f.attrs["records_id"] = uuid.uuid4().hex  # a new one per recording: keys the projection cache
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if key in _JSON_ATTRS else value
        f.attrs["analyzed"] = False
        g = f.create_group("data")
        for key, value in data.items():
            if value is None:
                continue
            value = np.asarray(value)
            if value.dtype.kind in "US":
                g.create_dataset(key, data=value.astype(object), dtype=h5py.string_dtype("utf-8"))
            else:
                g.create_dataset(key, data=value)
        lg = f.create_group("layers")
        for name, rec in layers.items():
            g = lg.create_group(name)
            for key, value in rec["attrs"].items():
                g.attrs[key] = value
            # uncompressed: float16 maps and noisy patches gain little from gzip, and writing
            # them compressed took about as long as the streaming pass over small data sets
            g.create_dataset("max_act", data=np.asarray(rec["max_act"], dtype=np.float16))
            for sub in ("topk", "topk_distinct"):
                sg = g.create_group(sub)
                for key, value in rec[sub].items():
                    sg.create_dataset(key, data=value)


def write_stats(path: str | os.PathLike, *, layers: dict[str, dict[str, dict[str, np.ndarray]]],
                analysis: dict[str, np.ndarray], attrs: dict | None = None) -> None:
    """Add (or replace) the analysis of a records file, atomically.

    The file is copied under a temporary name, the groups ``/layers/<layer>/<group>`` (``stats``,
    and ``null`` when the run was compared with a null network) and ``/analysis`` are written into
    the copy, and the copy is renamed into place.

    Parameters
    ----------
    layers : dict of layer name to {group name: {dataset name: array}}
    analysis : dict of dataset name to array
        Data-set-wide arrays, under ``/analysis``.
    attrs : dict, optional
        Attributes of ``/analysis`` (strings, numbers).
    """
    path = Path(path)
    _open(path).close()
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            for name, groups in layers.items():
                g = f["layers"][name]
                for old in ("stats", "null", "temporal"):
                    if old in g:
                        del g[old]
                for group, arrays in groups.items():
                    sg = g.create_group(group)
                    for key, value in arrays.items():
                        sg.create_dataset(key, data=np.asarray(value))
            if "analysis" in f:
                del f["analysis"]
            ag = f.create_group("analysis")
            for key, value in analysis.items():
                ag.create_dataset(key, data=np.asarray(value))
            for key, value in (attrs or {}).items():
                ag.attrs[key] = value
            f.attrs["analyzed"] = True


def read_analysis_attrs(path: str | os.PathLike) -> dict:
    """The attributes of ``/analysis`` ({} before ``analyze`` ran)."""
    with _open(path) as f:
        if "analysis" not in f:
            return {}
        return {k: _attr(v) for k, v in f["analysis"].attrs.items()}


def _open(path) -> h5py.File:
    return open_checked(path, kind="records", schema=RECORDS_SCHEMA, error=RecordsFileError,
                        file_noun="records file", what="fercore records", schema_noun="records")


def _attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def read_records_header(path: str | os.PathLike) -> dict:
    """Root attributes plus ``layer_info`` {layer: attrs} (no arrays read)."""
    with _open(path) as f:
        try:
            head = {}
            for key, value in f.attrs.items():
                value = _attr(value)
                head[key] = json.loads(value) if key in _JSON_ATTRS else value
            head["layer_info"] = {name: {k: _attr(v) for k, v in f["layers"][name].attrs.items()}
                                  for name in head["layers"]}
            head["has_stats"] = all("stats" in f["layers"][name] for name in head["layers"])
        except (KeyError, ValueError, OSError) as e:
            raise RecordsFileError(f"{path}: damaged or incomplete records file ({e})") from None
    return head


def has_layer_array(path: str | os.PathLike, layer: str, name: str) -> bool:
    """Whether ``/layers/<layer>/<name>`` exists (e.g. ``topk/deconv`` of records made before
    projections were computed on demand)."""
    with _open(path) as f:
        return f"layers/{layer}/{name}" in f


def read_layer_array(path: str | os.PathLike, layer: str | None, name: str) -> np.ndarray:
    """One array: ``/layers/<layer>/<name>`` (``name`` may be ``topk/index``), or ``/<name>``
    when ``layer`` is None (e.g. ``data/labels``)."""
    with _open(path) as f:
        key = name if layer is None else f"layers/{layer}/{name}"
        if key not in f:
            raise RecordsFileError(f"{path}: no dataset {key!r}; rebuild the records")
        ds = f[key]
        if h5py.check_string_dtype(ds.dtype) is not None:
            return ds.asstr()[()]
        return ds[()]


def read_layer_group(path: str | os.PathLike, layer: str | None, group: str) -> dict[str, np.ndarray]:
    """Every dataset of ``/layers/<layer>/<group>`` (or ``/<group>`` when ``layer`` is None)."""
    with _open(path) as f:
        key = group if layer is None else f"layers/{layer}/{group}"
        if key not in f:
            raise RecordsFileError(f"{path}: no group {key!r}; run `python -m fercore analyze`")
        return {k: (v.asstr()[()] if h5py.check_string_dtype(v.dtype) is not None else v[()])
                for k, v in f[key].items()}
