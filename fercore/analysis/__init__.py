"""Stage 4, analysis: relate recorded filters to action units, with the controls.

- :mod:`fercore.analysis.estimators` — every statistic, defined once
- :mod:`fercore.analysis.criteria` — when a filter counts as AU-selective
- :mod:`fercore.analysis.confound` — filter x AU figures with the emotion held constant
- :mod:`fercore.analysis.nulls` — null networks (untrained, shuffled labels)
- :mod:`fercore.analysis.summary` — the honest-evidence summary of a run
- :mod:`fercore.analysis.probe` — a linear probe on the pixels (can the AUs be read at all?)

Imports every stage before it and the store.
"""
