"""The only package that touches HDF5: FaceSet files and, later, records files."""

from fercore.store.faceset_h5 import (
    FACESET_SCHEMA,
    FaceSetFileError,
    load_faceset,
    read_faceset_info,
    save_faceset,
)

__all__ = ["FACESET_SCHEMA", "FaceSetFileError", "load_faceset", "read_faceset_info", "save_faceset"]
