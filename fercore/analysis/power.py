"""What the beyond-emotion test could find on the data at hand: its power per AU.

A count of 0 filters "beyond emotion" means something only next to the effect the test would have
found. For every testable AU of a layer this module gives the **detectable effect**: the smallest
within-emotion AUC a filter must have for the beyond-emotion test (the within-emotion permutation
test against ``min_auc``, then Benjamini-Hochberg over the layer's filter x AU pairs at ``alpha``)
to find it with probability :data:`POWER` (0.8), and the partial correlation given the emotion
that corresponds to it.

**The planted unit.** A synthetic filter planted into the data's own unit structure (its
sequences, emotions and AU codes: :class:`fercore.analysis.estimators.UnitTable`): within every
emotion class its activation is normal with unit variance, shifted by ``delta`` on the units that
carry the AU (plus any dependence on the emotion, which the test ignores), so its within-emotion
AUC is ``theta = Phi(delta / sqrt 2)``.

**Its test.** A further pair of the layer is rejected by BH together with the layer's own
p-values exactly when its p-value is at most :func:`bh_threshold` (the layer's multiple-testing
burden). A planted unit has no ties, so the permutation SE of its AUC depends only on the counts
and the test rejects exactly when the estimated AUC reaches the **critical AUC**
``min_auc + z(threshold) * SE``. The estimated AUC of the planted unit is a stratified
Mann-Whitney statistic whose mean (theta) and variance (Lehmann's exact formula, with the
probability that two units of one side both beat one of the other, a bivariate normal orthant
computed with Owen's T) are known in closed form, so the power is
``P(AUC_hat >= critical) = Phi((theta - critical) / sd(theta))`` (normal, as the test itself).
:func:`planted_rate` plants units by Monte Carlo and runs them through the real test
(:func:`fercore.analysis.estimators.within_emotion_auc` and the same threshold): the tests and
``bench/bench_power.py`` check that both agree.

An AU that varies in fewer than ``min_minority`` units within the emotions is **untestable** (no
power figure, not power 0); where even a perfect filter (AUC 1) stays below the critical AUC the
AU is **out of reach** on this data (detectable NaN, status :data:`OUT_OF_REACH`).
"""

from __future__ import annotations

import numpy as np
from scipy import special
from scipy import stats as sps

from fercore.analysis.estimators import UnitTable, within_emotion_auc

__all__ = ["DETECTABLE", "OUT_OF_REACH", "POWER", "STATUS_WORDS", "UNTESTABLE", "au_power", "auc_sd",
           "bh_threshold", "critical_auc", "partial_r", "planted_rate", "planted_units"]

#: The power at which an effect counts as detectable.
POWER = 0.8
#: Status codes of :func:`au_power`, per AU.
UNTESTABLE, DETECTABLE, OUT_OF_REACH = 0, 1, 2
STATUS_WORDS = {UNTESTABLE: "untestable", DETECTABLE: "detectable", OUT_OF_REACH: "out of reach"}
_GRID = np.linspace(0.5, 1.0, 2001)  # AUCs searched (steps of 0.00025)


def bh_threshold(p_layer: np.ndarray, alpha: float) -> float:
    """The largest p-value with which one further test is rejected by Benjamini-Hochberg at
    ``alpha`` together with the layer's own tests.

    With the layer's m - 1 finite p-values sorted, ``o_(1) <= ... <= o_(m-1)``, a further p-value
    ``p`` is rejected exactly when ``p <= alpha k* / m``, ``k*`` the largest k in 1..m with
    ``o_(k-1) <= alpha k / m`` (``o_(0)`` = -inf, so k* >= 1): the layer's own discoveries lower
    the burden of a new one.

    Parameters
    ----------
    p_layer : array, any shape
        The layer's p-values (NaN: not tested, left out).
    alpha : float
    """
    p = np.sort(np.asarray(p_layer, dtype=np.float64)[np.isfinite(p_layer)])
    m = len(p) + 1
    k = np.arange(1, m + 1)
    ok = np.concatenate([[True], p <= alpha * k[1:] / m])
    return float(alpha * k[ok].max() / m)


def _counts(units: UnitTable, a: int) -> tuple[np.ndarray, np.ndarray]:
    """(C,) units with the AU coded and of them carrying it, in the classes where it varies."""
    n, m = units.n[:, a].astype(np.float64), units.m[:, a].astype(np.float64)
    vary = (m > 0) & (m < n)
    return n[vary], m[vary]


def critical_auc(units: UnitTable, a: int, threshold: float, margin: float) -> float:
    """The estimated within-emotion AUC at which a tie-free filter's test for AU ``a`` reaches the
    p-value ``threshold`` (:func:`bh_threshold`): ``margin + z(threshold) * SE0``, SE0 the
    permutation SE of :func:`fercore.analysis.estimators.within_emotion_auc` without ties."""
    n, m = _counts(units, a)
    pairs = float((m * (n - m)).sum())
    if pairs == 0:
        return float("nan")
    se0 = np.sqrt((m * (n - m) * (n + 1) / 12.0).sum()) / pairs
    return float(margin + sps.norm.isf(threshold) * se0)


def auc_sd(theta: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Standard deviation of the pooled within-emotion AUC of a planted unit with true AUC ``theta``.

    Per class (``n`` units, ``m`` with the AU, ``k = n - m`` without) Lehmann's exact variance of
    the Mann-Whitney count, ``m k [theta (1 - theta) + (m - 1)(Q - theta^2) + (k - 1)(Q - theta^2)]``,
    with ``Q`` the probability that two units of one side both beat one unit of the other; for the
    binormal planted unit both are ``Phi2(h, h; 1/2) = Phi(h) - 2 T(h, 1/sqrt 3)``, ``h =
    Phi^-1(theta)``. Pooled over classes by their pairs.

    Parameters
    ----------
    theta : (G,) float in [0.5, 1]
    n, m : (C,) float
        Units and units with the AU of the classes where it varies.
    """
    theta = np.asarray(theta, dtype=np.float64)
    h = special.ndtri(np.clip(theta, 0.0, 1.0))
    q = np.where(np.isinf(h), 1.0, theta - 2.0 * special.owens_t(np.where(np.isinf(h), 0.0, h), 1 / np.sqrt(3)))
    k = n - m
    var_u = (m * k)[None, :] * (theta * (1 - theta))[:, None] \
        + (m * k * (m - 1 + k - 1))[None, :] * (q - theta ** 2)[:, None]
    return np.sqrt(np.maximum(var_u.sum(axis=1), 0.0)) / (m * k).sum()


def partial_r(theta: np.ndarray, units: UnitTable, a: int) -> np.ndarray:
    """The partial correlation given the emotion (pooled within-class correlation over the units
    with the AU coded) of a planted unit with within-emotion AUC ``theta``: with ``delta = sqrt 2
    Phi^-1(theta)`` and ``v`` the units' pooled within-class variance of the AU's presence,
    ``delta sqrt(v) / sqrt(1 + delta^2 v)``."""
    n, m = units.n[:, a].astype(np.float64), units.m[:, a].astype(np.float64)
    total = n.sum()
    v = float((m * (n - m) / np.maximum(n, 1)).sum() / total) if total else 0.0
    delta = np.sqrt(2.0) * special.ndtri(np.clip(np.asarray(theta, dtype=np.float64), 0.0, 1.0))
    with np.errstate(invalid="ignore", over="ignore"):
        r = delta * np.sqrt(v) / np.sqrt(1.0 + delta ** 2 * v)
    return np.where(np.isinf(delta), 1.0 if v > 0 else np.nan, r)


def au_power(units: UnitTable, p_layer: np.ndarray, *, alpha: float, margin: float,
             min_minority: int, power: float = POWER) -> dict[str, np.ndarray]:
    """The beyond-emotion test's power on the data at hand, per AU, at one layer's burden.

    Parameters
    ----------
    units : UnitTable
        The data's units (:func:`fercore.analysis.estimators.unit_table`).
    p_layer : (F, A) float
        The layer's within-emotion p-values (NaN for untestable AUs), whose BH burden a found
        filter shares.
    alpha, margin, min_minority
        The criteria's ``alpha``, ``min_auc`` and ``min_minority``.
    power : float
        The detection probability that defines the detectable effect (0.8).

    Returns
    -------
    dict
        ``detectable_auc`` (A,) the smallest true within-emotion AUC found with probability
        ``power`` (NaN: untestable or out of reach); ``detectable_r`` (A,) its partial
        correlation given the emotion; ``critical_auc`` (A,) the estimated AUC at which the test
        rejects (found with probability 1/2); ``power_status`` (A,) int8 (:data:`UNTESTABLE`,
        :data:`DETECTABLE`, :data:`OUT_OF_REACH`); ``bh_threshold`` () the p-value a found pair
        needs at this layer.
    """
    n_a = units.present.shape[1]
    t = bh_threshold(p_layer, alpha)
    det = np.full(n_a, np.nan)
    det_r = np.full(n_a, np.nan)
    crit = np.full(n_a, np.nan)
    status = np.full(n_a, UNTESTABLE, np.int8)
    for a in range(n_a):
        if units.minority[a] < int(min_minority):
            continue
        n, m = _counts(units, a)
        crit[a] = critical_auc(units, a, t, margin)
        sd = auc_sd(_GRID, n, m)
        with np.errstate(divide="ignore", invalid="ignore"):
            pw = np.where(sd > 0, sps.norm.sf((crit[a] - _GRID) / np.where(sd > 0, sd, 1.0)),
                          (_GRID >= crit[a]).astype(np.float64))
        hit = np.flatnonzero(pw >= power)
        if not len(hit):
            status[a] = OUT_OF_REACH
            continue
        status[a] = DETECTABLE
        det[a] = _GRID[hit[0]]
        det_r[a] = float(partial_r(det[a], units, a))
    return {"detectable_auc": det, "detectable_r": det_r, "critical_auc": crit, "power_status": status,
            "bh_threshold": np.float64(t)}


def planted_units(units: UnitTable, a: int, theta: float, draws: int, rng: np.random.Generator,
                  emotion_effect: float = 1.0) -> np.ndarray:
    """(U, draws) activations of planted units with true within-emotion AUC ``theta`` for AU ``a``.

    Per unit: a class offset (drawn per class and draw, scale ``emotion_effect``: the unit also
    follows the emotions, which the test must ignore) + ``delta`` on the units carrying the AU +
    standard normal noise, ``delta = sqrt 2 Phi^-1(theta)``. Units whose AU is not coded get no
    shift.
    """
    delta = np.sqrt(2.0) * special.ndtri(min(max(float(theta), 0.0), 1.0 - 1e-12))
    n_classes = units.n.shape[0]
    offset = rng.normal(scale=emotion_effect, size=(n_classes, draws))
    carry = np.nan_to_num(units.present[:, a])[:, None]
    return offset[units.label] + delta * carry + rng.normal(size=(units.n_units, draws))


def planted_rate(units: UnitTable, a: int, theta: float, threshold: float, *, margin: float,
                 min_minority: int = 5, draws: int = 400, seed: int = 0) -> float:
    """The share of planted units (:func:`planted_units`) that the real test finds: within-emotion
    p-value (:func:`fercore.analysis.estimators.within_emotion_auc`) at most ``threshold``
    (:func:`bh_threshold` of the layer they would join). The Monte Carlo counterpart of
    :func:`au_power`."""
    x = planted_units(units, a, theta, draws, np.random.default_rng(seed))
    one = UnitTable(units.unit, units.label, units.present[:, [a]], units.n[:, [a]], units.m[:, [a]])
    p = within_emotion_auc(x, one, margin=margin, min_minority=min_minority)["p"][:, 0]
    return float(np.mean(np.nan_to_num(p, nan=1.0) <= threshold))
