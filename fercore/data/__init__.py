"""Stage 1, data: FACS facts, the FaceSet type, face preprocessing, data-set loaders, phantom faces.

- :mod:`fercore.data.facs` — action units, face regions, label sets, EMFACS prototypes
- :mod:`fercore.data.faceset` — :class:`~fercore.data.faceset.FaceSet`, what every source produces
- :mod:`fercore.data.preprocess` — decode, detect, align and crop a face photo
- :mod:`fercore.data.datasets` — CK+, FER2013/FER+, TFD and class-per-folder loaders
- :mod:`fercore.data.phantom` — the embedded phantom faces with ground-truth AUs

Imports only :mod:`fercore.util` and :mod:`fercore.store` (the FaceSet file).
"""
