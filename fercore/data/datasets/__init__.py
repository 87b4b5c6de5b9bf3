"""Real data sets: CK+, FER2013/FER+, TFD and class-per-folder trees -> FaceSet files.

One loader per data set (``load_ckplus``, ``load_fer2013``, ``load_tfd``, ``load_folder``), each
returning an :class:`ImportResult` (the FaceSet plus counts of what was skipped and why), and
:func:`import_dataset`, which runs a loader and caches its FaceSet file under
:func:`fercore.util.datasets_dir` by the hash of the sources and options. See ``docs/datasets.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fercore.data.datasets._common import ImportResult, subject_folds, summary_text
from fercore.data.datasets.ckplus import load_ckplus
from fercore.data.datasets.fer2013 import FERPLUS_SCHEMES, ferplus_target, load_fer2013
from fercore.data.datasets.folder import load_folder
from fercore.data.datasets.tfd import load_tfd
from fercore.data.preprocess import PreprocessOptions
from fercore.store.faceset_h5 import FaceSetFileError, load_faceset, read_faceset_info, save_faceset
from fercore.store.layout import datasets_dir
from fercore.util import Progress, file_hash, no_progress, stable_hash

__all__ = [
    "FERPLUS_SCHEMES",
    "ImportResult",
    "Imported",
    "KINDS",
    "default_options",
    "ferplus_target",
    "import_dataset",
    "load_ckplus",
    "load_fer2013",
    "load_folder",
    "load_tfd",
    "subject_folds",
]

KINDS = ("ckplus", "fer2013", "tfd", "folder")
#: Bumped when a loader's output changes for the same input, so old cached files are not reused.
IMPORT_VERSION = 1


def default_options(kind: str) -> PreprocessOptions:
    """The preprocessing a data set gets unless told otherwise."""
    from fercore.data.datasets import ckplus, fer2013, folder, tfd

    mods = {"ckplus": ckplus, "fer2013": fer2013, "tfd": tfd, "folder": folder}
    if kind not in mods:
        raise ValueError(f"data set kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    return mods[kind].DEFAULT_OPTIONS


def _fingerprint(path: Path) -> object:
    """Content hash of a file; (relative path, size, mtime) of every file of a folder tree."""
    if path.is_file():
        return file_hash(path)
    if path.is_dir():
        return [(p.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns)
                for p in sorted(path.rglob("*")) if p.is_file() for st in [p.stat()]]
    raise FileNotFoundError(f"{path}: no such file or folder")


@dataclass
class Imported:
    """What :func:`import_dataset` produced: the file, whether it was cached, and its summary."""

    path: Path
    cached: bool
    summary: str
    content_hash: str


def import_dataset(kind: str, source: str | os.PathLike, *, options: PreprocessOptions | None = None,
                   out: str | os.PathLike | None = None, force: bool = False,
                   progress: Progress = no_progress, **loader_options) -> Imported:
    """Import a data set into a FaceSet file, reusing an identical earlier import.

    Parameters
    ----------
    kind : {"ckplus", "fer2013", "tfd", "folder"}
    source : path
        The data set root folder (CK+, folder) or file (fer2013.csv, TFD .mat).
    options : PreprocessOptions, keyword-only, optional
        Default: :func:`default_options` of the kind.
    out : path, keyword-only, optional
        The FaceSet file; default ``datasets_dir()/<kind>-<hash>.h5``.
    force : bool, keyword-only
        Re-import even when the cached file exists.
    progress : callable, keyword-only
    **loader_options
        Passed to the loader (``classes=6`` for CK+, ``ferplus=...`` for FER2013, ...); paths
        among them are part of the cache key by content.

    Returns
    -------
    Imported
    """
    if kind not in KINDS:
        raise ValueError(f"data set kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    options = options or default_options(kind)
    source = Path(source)
    key_parts = {"kind": kind, "version": IMPORT_VERSION, "source": _fingerprint(source),
                 "options": options.to_dict(), "loader": {}}
    for k, v in sorted(loader_options.items()):
        if k in ("ferplus", "au_csv") and v is not None:
            key_parts["loader"][k] = _fingerprint(Path(v))
        else:
            key_parts["loader"][k] = list(v) if isinstance(v, tuple) else v
    digest = stable_hash(key_parts)[:16]
    path = Path(out) if out is not None else datasets_dir() / f"{kind}-{digest}.h5"
    if not force and path.exists():
        try:
            info = read_faceset_info(path)
            meta = info["meta"]
            if meta.get("import_key") == digest:
                text = meta.get("import_summary")
                if text is None:
                    text = summary_text(load_faceset(path), meta.get("import", {}))
                return Imported(path, True, text, info["content_hash"])
        except FaceSetFileError:
            pass  # unreadable or foreign: rebuild it
    loaders = {"ckplus": load_ckplus, "fer2013": load_fer2013, "tfd": load_tfd, "folder": load_folder}
    res: ImportResult = loaders[kind](source, options=options, progress=progress, **loader_options)
    if len(res.faceset) == 0:
        raise ValueError(f"{source}: no images were imported\n{res.summary()}")
    res.faceset.meta["import_key"] = digest
    res.faceset.meta["import_summary"] = res.summary()
    h = save_faceset(res.faceset, path)
    return Imported(path, False, res.summary(), h)
