"""FaceSet <-> HDF5. The layout is documented in ``docs/faceset.md``."""

from __future__ import annotations

import json
import os

import h5py

from fercore.data.faceset import FaceSet
from fercore.store._h5 import open_checked
from fercore.util import atomic_path

FACESET_SCHEMA = 1
_STR = h5py.string_dtype("utf-8")


class FaceSetFileError(ValueError):
    """A FaceSet file is missing, unreadable or not laid out as expected."""


def save_faceset(fs: FaceSet, path: str | os.PathLike) -> str:
    """Write ``fs`` to ``path`` (temporary name, then rename); return its content hash."""
    digest = fs.content_hash()
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["fercore_kind"] = "faceset"
        f.attrs["schema_version"] = FACESET_SCHEMA
        f.attrs["content_hash"] = digest
        f.attrs["class_names"] = json.dumps(list(fs.class_names))
        f.attrs["label_set"] = fs.label_set
        # the hash lives in the attribute above only: a stale copy in meta would outlive an edit
        meta = {k: v for k, v in fs.meta.items() if k != "content_hash"}
        f.attrs["meta"] = json.dumps(meta, sort_keys=True, default=str)
        n, h, w = fs.images.shape
        f.create_dataset("images", data=fs.images, chunks=(min(max(n, 1), 256), h, w),
                         compression="gzip", compression_opts=1, shuffle=True)
        f.create_dataset("labels", data=fs.labels)
        f.create_dataset("aus", data=fs.aus)
        f.create_dataset("au_ids", data=fs.au_ids)
        f.create_dataset("subjects", data=fs.subjects.astype(object), dtype=_STR)
        f.create_dataset("folds", data=fs.folds)
        if fs.sequences is not None:
            f.create_dataset("sequences", data=fs.sequences.astype(object), dtype=_STR)
        if fs.frames is not None:
            f.create_dataset("frames", data=fs.frames)
        if fs.phases is not None:
            f.create_dataset("phases", data=fs.phases)
        if fs.landmarks is not None:
            f.create_dataset("landmarks", data=fs.landmarks)
        if fs.label_dist is not None:
            f.create_dataset("label_dist", data=fs.label_dist)
        if fs.splits is not None:
            f.create_dataset("splits", data=fs.splits)
        g = f.create_group("targets")
        for k, v in fs.targets.items():
            g.create_dataset(k, data=v)
    return digest


def _open(path) -> h5py.File:
    return open_checked(path, kind="faceset", schema=FACESET_SCHEMA, error=FaceSetFileError, file_noun="FaceSet file",
                        what="a fercore FaceSet", schema_noun="FaceSet",
                        missing_hint="; build one with `python -m fercore phantom` or `import`",
                        rebuild_hint="; rebuild it")


def read_faceset_info(path: str | os.PathLike) -> dict:
    """Cheap header of a FaceSet file: hash, classes, size, N, meta (no images read)."""
    with _open(path) as f:
        return {
            "content_hash": str(f.attrs["content_hash"]),
            "class_names": json.loads(f.attrs["class_names"]),
            "label_set": str(f.attrs["label_set"]),
            "meta": json.loads(f.attrs["meta"]),
            "n": int(f["images"].shape[0]),
            "size": int(f["images"].shape[1]),
            "au_ids": f["au_ids"][()].tolist(),
        }


def load_faceset(path: str | os.PathLike) -> FaceSet:
    """Read a FaceSet file; FaceSetFileError naming the file and what is wrong otherwise."""
    with _open(path) as f:
        try:
            def opt(name):
                return f[name][()] if name in f else None

            def strs(name):
                return None if name not in f else f[name].asstr()[()]

            fs = FaceSet(
                images=f["images"][()],
                labels=f["labels"][()],
                class_names=tuple(json.loads(f.attrs["class_names"])),
                label_set=str(f.attrs["label_set"]),
                aus=f["aus"][()],
                au_ids=f["au_ids"][()],
                subjects=strs("subjects"),
                folds=f["folds"][()],
                sequences=strs("sequences"),
                frames=opt("frames"),
                phases=opt("phases"),
                landmarks=opt("landmarks"),
                label_dist=opt("label_dist"),
                splits=opt("splits"),
                targets={k: v[()] for k, v in f["targets"].items()} if "targets" in f else {},
                meta=json.loads(f.attrs["meta"]),
            )
        except (KeyError, ValueError, OSError) as e:
            raise FaceSetFileError(f"{path}: damaged or incomplete FaceSet file ({e}); rebuild it") from None
    return fs
