"""fercore: what did a facial-expression network learn, and do its filters match facial action units?

The package is laid out as the path the data takes (``docs/architecture.md``):
:mod:`fercore.data` -> :mod:`fercore.training` -> :mod:`fercore.recording` ->
:mod:`fercore.analysis`, with :mod:`fercore.store` (every file) beneath them all and
:mod:`fercore.pipeline` and :mod:`fercore.cli` on top.
"""
