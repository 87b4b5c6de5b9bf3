"""Stage 2, training: models, network inputs, losses, augmentation, presets, the k-fold loop, evaluation.

- :mod:`fercore.training.models` — the zero-bias CNN and FER+ VGG13, layer geometry, loading a run's model
- :mod:`fercore.training.inputs` — stored faces -> network input (resize, normalise)
- :mod:`fercore.training.losses` — label schemes (hard, FER+ majority / multi-label / probability / cross-entropy)
- :mod:`fercore.training.augment` — batch augmentation
- :mod:`fercore.training.presets` — named model + training setups
- :mod:`fercore.training.loop` — :func:`~fercore.training.loop.train`, cached and resumable
- :mod:`fercore.training.evaluate` — scoring a run on another data set; ROC AUC

Imports the data stage and the store.
"""
