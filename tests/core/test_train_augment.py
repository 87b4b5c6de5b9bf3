"""Batch augmentation: range, determinism, and each transform on its own."""

import torch

from fercore.training.augment import AugmentParams, augment_batch

NONE = AugmentParams(flip=0.0, rotate_deg=0.0, scale=(1.0, 1.0), translate=0.0, gamma=(1.0, 1.0),
                     gain=(1.0, 1.0), offset=(0.0, 0.0))


def _batch(n=6, s=16):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, s, s, generator=g)


def test_identity_parameters_leave_the_batch_unchanged():
    x = _batch()
    torch.testing.assert_close(augment_batch(x, params=NONE), x, atol=1e-5, rtol=0)


def test_flip_always_is_a_mirror_image():
    x = _batch()
    y = augment_batch(x, params=AugmentParams(**{**NONE.to_dict(), "flip": 1.0}))
    torch.testing.assert_close(y, x.flip(-1), atol=1e-5, rtol=0)


def test_intensity_change_is_the_power_law_then_rescaled():
    x = _batch()
    y = augment_batch(x, params=AugmentParams(**{**NONE.to_dict(), "gamma": (2.0, 2.0), "gain": (0.5, 0.5),
                                                 "offset": (0.1, 0.1)}))
    torch.testing.assert_close(y, x ** 2 * 0.5 + 0.1, atol=1e-5, rtol=0)  # stays within [0, 1]
    z = augment_batch(x, params=AugmentParams(**{**NONE.to_dict(), "gain": (1.4, 1.4), "offset": (0.1, 0.1)}))
    assert z.min() >= 0 and z.max() <= 1 + 1e-6
    assert torch.allclose(z.amax(dim=(1, 2, 3)), torch.ones(6))  # rescaled where it left [0, 1]


def test_default_augmentation_stays_in_range_and_is_seeded():
    x = _batch(8, 24)
    a = augment_batch(x, generator=torch.Generator().manual_seed(1))
    b = augment_batch(x, generator=torch.Generator().manual_seed(1))
    c = augment_batch(x, generator=torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1 + 1e-6
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a, x)


def test_scaling_up_zooms_into_the_centre():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 12:20, 12:20] = 1.0  # an 8 px square in the middle
    y = augment_batch(x, params=AugmentParams(**{**NONE.to_dict(), "scale": (1.4, 1.4)}))
    area = float((y > 0.5).sum())
    assert 1.4 ** 2 * 64 * 0.8 < area < 1.4 ** 2 * 64 * 1.2
