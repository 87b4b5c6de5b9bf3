"""Stage 3, recording: what every filter of a trained network responds to.

- :mod:`fercore.recording.hooks` — forward hooks that always come off
- :mod:`fercore.recording.streaming` — streaming top-K statistics
- :mod:`fercore.recording.deconv` — Zeiler-Fergus deconvnet projections
- :mod:`fercore.recording.record` — :func:`~fercore.recording.record.record`: one pass, one ``records.h5``
- :mod:`fercore.recording.face` — one face through the network (prediction, maps, Grad-CAM)

Imports the data and training stages and the store.
"""
