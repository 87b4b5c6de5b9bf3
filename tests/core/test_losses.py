import math

import pytest
import torch

from fercore.training.losses import SCHEMES, check_scheme, draw_labels, scheme_loss

# softmax of (0, ln 2) is (1/3, 2/3)
LOGITS = torch.tensor([[0.0, math.log(2.0)]])


def test_hard_is_cross_entropy():
    assert scheme_loss(LOGITS, torch.tensor([1]), "hard").item() == pytest.approx(math.log(1.5))
    assert scheme_loss(LOGITS, torch.tensor([0]), "hard").item() == pytest.approx(math.log(3.0))


def test_majority_takes_the_argmax_of_a_target_row():
    assert scheme_loss(LOGITS, torch.tensor([[0.2, 0.8]]), "majority").item() == pytest.approx(math.log(1.5))
    assert scheme_loss(LOGITS, torch.tensor([[0.9, 0.1]]), "majority").item() == pytest.approx(math.log(3.0))


def test_multilabel_is_minus_log_of_the_best_accepted_class():
    # both accepted: -log max(1/3, 2/3)
    assert scheme_loss(LOGITS, torch.tensor([[0.5, 0.5]]), "multilabel").item() == pytest.approx(math.log(1.5))
    # only class 0 accepted: -log 1/3, whatever the weight
    assert scheme_loss(LOGITS, torch.tensor([[0.3, 0.0]]), "multilabel").item() == pytest.approx(math.log(3.0))


def test_crossentropy_against_a_distribution_renormalised():
    expected = 0.25 * math.log(3.0) + 0.75 * math.log(1.5)
    assert scheme_loss(LOGITS, torch.tensor([[0.25, 0.75]]), "crossentropy").item() == pytest.approx(expected)
    assert scheme_loss(LOGITS, torch.tensor([[1.0, 3.0]]), "crossentropy").item() == pytest.approx(expected)


def test_batch_loss_is_the_mean():
    logits = LOGITS.repeat(2, 1)
    loss = scheme_loss(logits, torch.tensor([0, 1]), "hard").item()
    assert loss == pytest.approx((math.log(3.0) + math.log(1.5)) / 2)


def test_probability_draws_follow_the_distribution():
    dist = torch.tensor([[0.0, 1.0, 0.0], [0.25, 0.0, 0.75]]).repeat(2000, 1)
    labels = draw_labels(dist, generator=torch.Generator().manual_seed(0))
    assert torch.all(labels[0::2] == 1)
    share = (labels[1::2] == 2).float().mean().item()
    assert share == pytest.approx(0.75, abs=0.04)
    assert not torch.any(labels[1::2] == 1)


def test_probability_draws_are_seeded():
    dist = torch.full((50, 4), 0.25)
    a = draw_labels(dist, generator=torch.Generator().manual_seed(3))
    b = draw_labels(dist, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_gradient_flows_for_every_scheme():
    for scheme in SCHEMES:
        logits = torch.zeros(2, 3, requires_grad=True)
        target = torch.tensor([0, 2]) if scheme in ("hard", "probability") else torch.tensor([[1.0, 0, 0], [0, 0.5, 0.5]])
        scheme_loss(logits, target, scheme).backward()
        assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(ValueError, match="hard, majority"):
        check_scheme("votes")
