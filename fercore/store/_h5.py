"""Opening a fercore HDF5 file: exists, is HDF5, is the expected kind, has the schema this code reads."""

from __future__ import annotations

from pathlib import Path

import h5py


def open_checked(path, *, kind: str, schema: int, error: type[Exception], file_noun: str, what: str,
                 schema_noun: str, missing_hint: str = "", rebuild_hint: str = "") -> h5py.File:
    """Open ``path`` read-only, or raise ``error`` naming the file and what is wrong.

    Parameters
    ----------
    kind : str
        The ``fercore_kind`` root attribute the file must carry.
    schema : int
        The ``schema_version`` this code reads.
    file_noun, what, schema_noun : str
        Wording of the messages ("records file", "fercore records", "records").
    missing_hint, rebuild_hint : str
        Appended to the message for a missing file, and for an unreadable or outdated one.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such {file_noun}{missing_hint}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise error(f"{path}: not a readable HDF5 file ({e}){rebuild_hint}") from None
    if f.attrs.get("fercore_kind") != kind:
        f.close()
        raise error(f"{path}: an HDF5 file, but not {what} (no fercore_kind='{kind}')")
    version = int(f.attrs.get("schema_version", -1))
    if version != schema:
        f.close()
        raise error(f"{path}: {schema_noun} schema {version}, this fercore reads {schema}{rebuild_hint}")
    return f
