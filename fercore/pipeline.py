"""The stages run end to end and cached: a data set -> FaceSet file (:func:`import_dataset`), and
the embedded default: phantom faces -> trained run -> records -> untrained null network ->
filter/AU analysis (compared with the null).

:func:`build_default` is what ``python -m fercore default`` and the dashboard (when no run exists
yet) call. Every stage is cached: the phantom FaceSet file is named by the hash of its options, the
run directory by the hash of its inputs (:mod:`fercore.training.presets`,
:mod:`fercore.training.loop`), recording and analysis are skipped when the run's records already
hold them. A second call returns the run directory in about the time it takes to read a few JSON
files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fercore.data.datasets import data_set_kind
from fercore.data.datasets._common import summary_text
from fercore.data.preprocess import PreprocessOptions
from fercore.store.faceset_h5 import FaceSetFileError, load_faceset, read_faceset_info, save_faceset
from fercore.store.layout import datasets_dir, records_path
from fercore.util import Progress, file_hash, no_progress, stable_hash

__all__ = ["DEFAULT_PRESET", "FIRST_LOOK_FOLDS", "IMPORT_VERSION", "STAGES", "Imported", "build_default", "build_run",
           "import_dataset", "phantom_path", "planned_run_dir", "refresh_records", "run_complete"]

#: Bumped when a loader's output changes for the same input, so old cached files are not reused
#: (2: 68-point landmarks and the canonical face geometry).
IMPORT_VERSION = 2

#: The training preset of the embedded default.
DEFAULT_PRESET = "phantom-default"
#: The rounds of the default's first look (:func:`build_default` with ``first_look``).
FIRST_LOOK_FOLDS = (0,)

#: Stage names reported through ``progress(done, total, stage)``, in order.
STAGES = ("phantom", "train", "record", "null", "analyze")


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
        Default: the kind's (:data:`fercore.data.datasets.DATASETS`).
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
    entry = data_set_kind(kind)
    options = options or entry.options
    source = Path(source)
    key_parts = {"kind": kind, "version": IMPORT_VERSION, "source": _fingerprint(source),
                 "options": options.to_dict(), "loader": {}}
    for k, v in sorted(loader_options.items()):
        if k in entry.file_options and v is not None:
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
    res = entry.load(source, options=options, progress=progress, **loader_options)
    if len(res.faceset) == 0:
        raise ValueError(f"{source}: no images were imported\n{res.summary()}")
    res.faceset.meta["import_key"] = digest
    res.faceset.meta["import_summary"] = res.summary()
    h = save_faceset(res.faceset, path)
    return Imported(path, False, res.summary(), h)


def _options_dict(options) -> dict:
    if isinstance(options, Mapping):
        return dict(options)
    if hasattr(options, "__dataclass_fields__"):
        return {k: getattr(options, k) for k in options.__dataclass_fields__}
    raise TypeError(f"phantom options: expected a mapping or a dataclass, got {type(options).__name__}")


def phantom_path(options=None) -> Path:
    """Where the phantom FaceSet made with ``options`` is cached.

    Parameters
    ----------
    options : mapping or dataclass, optional
        Options of :func:`fercore.data.phantom.generate_faceset`; default
        :data:`fercore.training.presets.DEFAULT_PHANTOM`.

    Returns
    -------
    Path
        ``datasets_dir() / "phantom-<hash8>.h5"``, the hash taken over the options and
        :data:`fercore.data.phantom.GENERATOR_VERSION`.
    """
    if options is None:
        from fercore.training.presets import DEFAULT_PHANTOM

        options = DEFAULT_PHANTOM
    from fercore.data.phantom import GENERATOR_VERSION

    # The generator's version is part of the name: a changed generator never overwrites the
    # faces that existing runs were trained and recorded on.
    key = {**_options_dict(options), "generator_version": GENERATOR_VERSION}
    return datasets_dir() / f"phantom-{stable_hash(key)[:8]}.h5"


def _stage_progress(progress: Progress, index: int, stage: str) -> Progress:
    """Map a stage's own ``(done, total)`` onto the whole pipeline: stage ``index`` of ``len(STAGES)``."""
    n = len(STAGES)

    def inner(done: int, total: int, what: str = "") -> None:
        frac = min(max(done / total, 0.0), 1.0) if total else 0.0
        progress(int(round((index + frac) * 1000)), n * 1000, f"{stage} ({index + 1}/{n})")

    return inner


def _ensure_phantom(options, progress: Progress) -> Path:
    from fercore.data.phantom import generate_faceset
    from fercore.store.faceset_h5 import FaceSetFileError, read_faceset_info, save_faceset

    path = phantom_path(options)
    if path.exists():
        try:
            read_faceset_info(path)
            return path
        except (FaceSetFileError, OSError):
            pass  # a damaged cache file is regenerated below
    fs = generate_faceset(progress=progress, **_options_dict(options))
    save_faceset(fs, path)
    return path


def _recorded(run_dir: Path) -> bool:
    """Whether the run has a readable records file of the current schema."""
    from fercore.store.reader import open_run

    return open_run(run_dir).has_records


def _analysed(run_dir: Path, null: str | None) -> bool:
    """Whether the run's records hold a current analysis compared with ``null``."""
    from fercore.store.reader import open_run

    reader = open_run(run_dir)  # an unreadable records file opens with has_records False
    return reader.has_stats and (reader.analysis_info().get("null") or None) == null


def refresh_records(run_dir: str | Path, *, k: int | None = None, null: str | None = "auto",
                    progress: Progress | None = None) -> Path:
    """Record a trained run's filters and analyse them again (the dashboard's "rebuild" button).

    Parameters
    ----------
    run_dir : path
        A run directory holding ``config.json`` and weights.
    k : int, optional
        Top-K per filter; by default the k and layers of the run's existing records (so a user's
        ``record --k 32`` is kept), else the recorder's default.
    null : str or None
        The null network the analysis compares with (recorded again on the run's data).
    progress : callable, optional
        ``progress(done, total, stage)`` over the stages.

    Returns
    -------
    Path
        ``run_dir``.
    """
    from fercore.analysis.analyze import analyze
    from fercore.analysis.nulls import ensure_null
    from fercore.recording.record import record
    from fercore.store.records_h5 import RecordsFileError, read_records_header

    run_dir = Path(run_dir)
    progress = progress or no_progress
    kw = {}
    if records_path(run_dir).exists():
        try:
            head = read_records_header(records_path(run_dir))
            kw = {"k": int(head["k"]), "layers": list(head["layers"])}
        except RecordsFileError:
            kw = {}  # unreadable: the recorder's defaults
    if k is not None:
        kw["k"] = int(k)
    record(run_dir, progress=_stage_progress(progress, 2, "record"), **kw)
    if null is not None:
        ensure_null(run_dir, kind=null, progress=_stage_progress(progress, 3, "null"))
    analyze(run_dir, null=null, progress=_stage_progress(progress, 4, "analyze"))
    progress(len(STAGES) * 1000, len(STAGES) * 1000, "done")
    return run_dir


def build_run(
    *,
    phantom=None,
    preset: str = DEFAULT_PRESET,
    train_options: Mapping | None = None,
    k: int | None = None,
    null: str | None = "untrained",
    progress: Progress | None = None,
) -> Path:
    """Generate (or reuse) a phantom data set, train a preset on it, record it, build its null
    network and analyse the run against it.

    Parameters
    ----------
    phantom : mapping or dataclass, optional
        Phantom options; default :data:`fercore.training.presets.DEFAULT_PHANTOM`.
    preset : str
        Training preset name for :func:`fercore.training.presets.train_preset`.
    train_options : mapping, optional
        Keyword overrides passed to ``train_preset`` (model width, epochs, folds...).
    k : int, optional
        Top-K per filter for recording.
    null : {"untrained", "shuffled"} or None
        The null network (``<run_dir>/null/<kind>``, recorded on the same data; cached like the
        other stages) the analysis compares with; None analyses without one.
    progress : callable, optional
        ``progress(done, total, stage)``; ``total`` is fixed across the stages (:data:`STAGES`).

    Returns
    -------
    Path
        The run directory.
    """
    from fercore.analysis.analyze import analyze
    from fercore.analysis.nulls import ensure_null
    from fercore.recording.record import record
    from fercore.training.presets import DEFAULT_PHANTOM, train_preset

    progress = progress or no_progress
    phantom = DEFAULT_PHANTOM if phantom is None else phantom
    path = _ensure_phantom(phantom, _stage_progress(progress, 0, "phantom"))
    run_dir = Path(train_preset(path, preset, progress=_stage_progress(progress, 1, "train"),
                                **dict(train_options or {})))
    if k is not None or not _recorded(run_dir):  # existing records keep the k they were made with
        # the projections of a run built here are made up front: for the default network they cost
        # about a third of a second, and its Filters view then never waits for them
        record(run_dir, progress=_stage_progress(progress, 2, "record"), projections="all",
               **({} if k is None else {"k": k}))
    if null is not None:
        stage = _stage_progress(progress, 3, "null")
        stage(0, 1)  # named even when every part of it is cached
        ensure_null(run_dir, kind=null, progress=stage)
    if not _analysed(run_dir, null):
        analyze(run_dir, null=null, progress=_stage_progress(progress, 4, "analyze"))
    progress(len(STAGES) * 1000, len(STAGES) * 1000, "done")
    return run_dir


def build_default(*, progress: Progress | None = None, first_look: bool = False) -> Path:
    """Build the embedded default run (phantom data, train, record, untrained null network,
    analysis), each stage cached, so the dashboard shows the controls at once.

    Parameters
    ----------
    progress : callable, optional
        ``progress(done, total, stage)`` across the five stages (:data:`STAGES`).
    first_look : bool
        Train only the rounds of :data:`FIRST_LOOK_FOLDS` (one of the ten): a complete run --
        trained, recorded, analysed against its null -- in well under a minute on two cores, which
        the dashboard shows while the full default trains (its own run directory; the full build
        trains round 0 again, about a tenth of its training).

    Returns
    -------
    Path
        The run directory under :func:`fercore.store.layout.runs_dir`.
    """
    return build_run(null="untrained", progress=progress,
                     train_options={"folds": FIRST_LOOK_FOLDS} if first_look else None)


def planned_run_dir(*, phantom=None, preset: str = DEFAULT_PRESET, train_options: Mapping | None = None) -> Path | None:
    """The run directory :func:`build_run` with these arguments trains into (None while its
    phantom FaceSet does not exist yet); nothing is trained or written."""
    from fercore.training.loop import run_dir_for
    from fercore.training.presets import DEFAULT_PHANTOM, resolve

    path = phantom_path(DEFAULT_PHANTOM if phantom is None else phantom)
    if not path.exists():
        return None
    spec, config = resolve(preset, path, **dict(train_options or {}))
    return run_dir_for(path, spec, config)


def run_complete(run_dir: Path | None) -> bool:
    """Whether a run directory holds a finished training, records and their analysis."""
    from fercore.store.reader import open_run

    return bool(run_dir) and (Path(run_dir) / "metrics.json").exists() and open_run(run_dir).has_stats
