"""The embedded default, end to end: phantom faces -> trained run -> records -> filter/AU analysis
-> untrained null network (the control every filter-AU figure is compared with).

:func:`build_default` is what ``python -m fercore default`` and the dashboard (when no run exists
yet) call. Every stage is cached: the phantom FaceSet file is named by the hash of its options, the
run directory by the hash of its inputs (``fercore.presets`` / ``fercore.train``), and recording
and analysis are skipped when the run's records already hold them. A second call returns the run
directory in about the time it takes to read a few JSON files.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path

from fercore.store.layout import datasets_dir
from fercore.util import Progress, no_progress, stable_hash

__all__ = ["DEFAULT_PRESET", "STAGES", "build_default", "build_run", "phantom_path", "refresh_records"]

#: The training preset of the embedded default.
DEFAULT_PRESET = "phantom-default"

#: Stage names reported through ``progress(done, total, stage)``, in order. ``null`` (the untrained
#: null network, :func:`fercore.null.ensure_null`) runs only in :func:`build_default` and
#: :func:`build_run` with ``null=True``.
STAGES = ("phantom", "train", "record", "analyze", "null")


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _call(fn: Callable, *args, progress: Progress | None = None, **kwargs):
    """Call a stage function, handing it ``progress`` when it takes one."""
    if progress is not None and _accepts(fn, "progress"):
        kwargs["progress"] = progress
    return fn(*args, **kwargs)


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
        Options of :func:`fercore.phantom.generate_faceset`; default
        :data:`fercore.presets.DEFAULT_PHANTOM`.

    Returns
    -------
    Path
        ``datasets_dir() / "phantom-<hash8>.h5"``, the hash taken over the options and
        :data:`fercore.phantom.GENERATOR_VERSION`.
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
    opts = _options_dict(options)
    fs = _call(generate_faceset, progress=progress, **opts)
    save_faceset(fs, path)
    return path


def _has_analysis(run_dir: Path) -> tuple[bool, bool]:
    """(records present and readable, analysis present) for a run directory."""
    try:
        from fercore.store.reader import open_run

        reader = open_run(run_dir)
    except Exception:  # an unreadable run is simply rebuilt
        return False, False
    if not reader.has_records:
        return False, False
    return True, bool(reader.has_stats)


def refresh_records(run_dir: str | Path, *, k: int | None = None, progress: Progress | None = None) -> Path:
    """Record a trained run's filters and analyse them again (the dashboard's "rebuild" button).

    Parameters
    ----------
    run_dir : path
        A run directory holding ``config.json`` and weights.
    k : int, optional
        Top-K per filter; the recorder's default when None.
    progress : callable, optional
        ``progress(done, total, stage)`` over the two stages.

    Returns
    -------
    Path
        ``run_dir``.
    """
    from fercore.analysis.estimators import analyze
    from fercore.recording.record import record

    run_dir = Path(run_dir)
    progress = progress or no_progress
    kw = {} if k is None else {"k": k}
    _call(record, run_dir, progress=_stage_progress(progress, 2, "record"), **kw)
    _call(analyze, run_dir, progress=_stage_progress(progress, 3, "analyze"))
    progress(len(STAGES) * 1000, len(STAGES) * 1000, "done")
    return run_dir


def build_run(
    *,
    phantom=None,
    preset: str = DEFAULT_PRESET,
    train_options: Mapping | None = None,
    k: int | None = None,
    null: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Generate (or reuse) a phantom data set, train a preset on it, record and analyse it, and
    (``null=True``) build its untrained null network.

    Parameters
    ----------
    phantom : mapping or dataclass, optional
        Phantom options; default :data:`fercore.presets.DEFAULT_PHANTOM`.
    preset : str
        Training preset name for :func:`fercore.presets.train_preset`.
    train_options : mapping, optional
        Keyword overrides passed to ``train_preset`` (model width, epochs, folds...).
    k : int, optional
        Top-K per filter for recording.
    null : bool
        Also build the untrained null network (``<run_dir>/null/untrained``, recorded and analysed
        on the same data; cached like the other stages).
    progress : callable, optional
        ``progress(done, total, stage)``; ``total`` is fixed across the stages (:data:`STAGES`).

    Returns
    -------
    Path
        The run directory.
    """
    from fercore.training.presets import DEFAULT_PHANTOM, train_preset

    progress = progress or no_progress
    phantom = DEFAULT_PHANTOM if phantom is None else phantom
    path = _ensure_phantom(phantom, _stage_progress(progress, 0, "phantom"))
    run_dir = Path(
        _call(train_preset, path, preset, progress=_stage_progress(progress, 1, "train"), **dict(train_options or {}))
    )
    recorded, analysed = _has_analysis(run_dir)
    if not recorded:
        from fercore.recording.record import record

        kw = {} if k is None else {"k": k}
        _call(record, run_dir, progress=_stage_progress(progress, 2, "record"), **kw)
    if not analysed:
        from fercore.analysis.estimators import analyze

        _call(analyze, run_dir, progress=_stage_progress(progress, 3, "analyze"))
    if null:
        from fercore.analysis.nulls import ensure_null

        stage = _stage_progress(progress, 4, "null")
        stage(0, 1)  # named even when every part of it is cached
        ensure_null(run_dir, kind="untrained", progress=stage)
    progress(len(STAGES) * 1000, len(STAGES) * 1000, "done")
    return run_dir


def build_default(*, progress: Progress | None = None) -> Path:
    """Build the embedded default run (phantom data, train, record, analyse, untrained null
    network), each stage cached, so the dashboard shows the controls at once.

    Parameters
    ----------
    progress : callable, optional
        ``progress(done, total, stage)`` across the five stages (:data:`STAGES`).

    Returns
    -------
    Path
        The run directory under :func:`fercore.util.runs_dir`.
    """
    return build_run(null=True, progress=progress)
