"""Real data sets: CK+, FER2013/FER+, TFD and class-per-folder trees -> FaceSets.

One loader per data set (``load_ckplus``, ``load_fer2013``, ``load_tfd``, ``load_folder``), each
returning an :class:`ImportResult` (the FaceSet plus counts of what was skipped and why), and the
one registry of them, :data:`DATASETS`. Writing and caching the FaceSet file is the pipeline's
(:func:`fercore.pipeline.import_dataset`). See ``docs/datasets.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fercore.data.datasets import ckplus, fer2013, folder, tfd
from fercore.data.datasets._common import ImportResult, subject_folds
from fercore.data.datasets.ckplus import load_ckplus
from fercore.data.datasets.fer2013 import FERPLUS_SCHEMES, ferplus_target, load_fer2013
from fercore.data.datasets.folder import load_folder
from fercore.data.datasets.tfd import load_tfd
from fercore.data.preprocess import PreprocessOptions

__all__ = [
    "DATASETS",
    "DataSetKind",
    "FERPLUS_SCHEMES",
    "ImportResult",
    "KINDS",
    "default_options",
    "ferplus_target",
    "load_ckplus",
    "load_fer2013",
    "load_folder",
    "load_tfd",
    "subject_folds",
]



@dataclass(frozen=True)
class DataSetKind:
    """One importable data-set format.

    Attributes
    ----------
    name : str
        The kind's word (``python -m fercore import <name>``).
    load : callable
        ``load(source, *, options, progress, **loader_options) -> ImportResult``.
    options : PreprocessOptions
        The face preprocessing it gets unless told otherwise.
    source : str
        What the source is, in words (for help texts).
    file_options : tuple of str
        Loader options that name files (part of an import's cache key by content).
    """

    name: str
    load: Callable[..., ImportResult]
    options: PreprocessOptions
    source: str
    file_options: tuple[str, ...] = ()


#: The one registry of data-set formats, in the order help texts list them.
DATASETS: dict[str, DataSetKind] = {k.name: k for k in (
    DataSetKind("ckplus", load_ckplus, ckplus.DEFAULT_OPTIONS, "the CK+ root folder (cohn-kanade-images/, Emotion/, FACS/)"),
    DataSetKind("fer2013", load_fer2013, fer2013.DEFAULT_OPTIONS, "fer2013.csv", ("ferplus",)),
    DataSetKind("tfd", load_tfd, tfd.DEFAULT_OPTIONS, "the TFD .mat file"),
    DataSetKind("folder", load_folder, folder.DEFAULT_OPTIONS, "a class-per-folder image tree", ("au_csv",)),
)}
KINDS = tuple(DATASETS)


def data_set_kind(kind: str) -> DataSetKind:
    """The registry entry of ``kind``; ValueError listing the kinds otherwise."""
    try:
        return DATASETS[kind]
    except KeyError:
        raise ValueError(f"data set kind: expected one of {', '.join(KINDS)}, got {kind!r}") from None


def default_options(kind: str) -> PreprocessOptions:
    """The preprocessing a data set gets unless told otherwise."""
    return data_set_kind(kind).options


