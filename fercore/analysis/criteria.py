"""When does a filter count as AU-selective? A funnel of controls, each a subset of the one before.

For a filter ``f`` and an AU ``a`` of one layer (``docs/honest_fau.md`` gives the reasons):

1. **raw** — at least ``min_share`` (0.8) of the filter's top-K images carry the AU, and the AU's
   base rate in the data set is below ``max_base_rate`` (0.4): the easy figure to inflate.
2. **distinct** — raw, and the same share holds on the *distinct* top-K list (at most one image
   per sequence, else subject), so near-copies of one clip count once.
3. **beyond emotion** — distinct, and the filter tells the units that carry the AU from those
   that do not *within the emotions*: the within-emotion AUC
   (:func:`fercore.analysis.estimators.within_emotion_auc`, a conditional permutation test that
   exchanges AU codes among the units of each emotion class) is significantly above ``min_auc``
   (0.6: an effect-size floor built into the null hypothesis) after Benjamini-Hochberg over all
   testable pairs of the layer (q < ``alpha``). AUs that vary in fewer than ``min_minority``
   units within the emotion classes are untestable and never pass.
4. **spatial** — beyond emotion, and at least ``min_spatial`` (0.5) of the distinct list's maxima
   lie inside the AU's face region (only where the data has landmarks).

Every count is a subset of the one before it (the masks are chained), so the four counts read as
a funnel. The rules here only read figures that ``analyze`` computed and stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fercore.analysis.power import OUT_OF_REACH, POWER

__all__ = ["STAGES", "STAGE_LABELS", "Criteria", "Verdict", "auc_with_interval", "explain", "first_failure", "funnel", "judged_au", "power_phrase", "stage_reached",
           "verdict"]

#: The funnel's stages, in order; each is a subset of the one before.
STAGES = ("raw", "distinct", "beyond_emotion", "spatial")
#: How tables and texts name them.
STAGE_LABELS = {"raw": "raw", "distinct": "distinct top-K", "beyond_emotion": "beyond emotion",
                "spatial": "in the AU's region"}


@dataclass(frozen=True)
class Criteria:
    """The thresholds of the funnel (see the module docstring).

    Attributes
    ----------
    min_share : float
        Top-K AU share needed by raw and distinct.
    max_base_rate : float
        AUs at least this common in the data are never selective (a filter's list carries them
        by chance).
    alpha : float
        Benjamini-Hochberg level of the within-emotion test (false discovery rate).
    min_auc : float
        The within-emotion AUC the test must show to be exceeded (its null: AUC <= min_auc).
    min_minority : int
        Units within classes that must tell the AU's presence from its absence for it to be
        testable.
    min_spatial : float
        Share of the distinct list's maxima inside the AU's region.
    """

    min_share: float = 0.8
    max_base_rate: float = 0.4
    alpha: float = 0.05
    min_auc: float = 0.6
    min_minority: int = 5
    min_spatial: float = 0.5

    def __post_init__(self):
        for name in ("min_share", "max_base_rate", "alpha", "min_spatial"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"Criteria.{name}: expected a value in [0, 1], got {v}")
        if not 0.5 <= self.min_auc < 1.0:
            raise ValueError(f"Criteria.min_auc: expected an AUC in [0.5, 1), got {self.min_auc}")
        if int(self.min_minority) != self.min_minority or self.min_minority < 1:
            raise ValueError(f"Criteria.min_minority: expected a positive integer, got {self.min_minority!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def funnel(ev, criteria: Criteria) -> dict[str, np.ndarray]:
    """The (F, A) bool mask of each stage of :data:`STAGES` for one layer; each is a subset of the
    one before. ``spatial`` is all False where the data has no landmarks.

    Parameters
    ----------
    ev : mapping
        The layer's figures: ``share_raw``, ``share_distinct``, ``q_emotion``, ``spatial`` (F, A)
        and ``base_rate``, ``testable`` (A,).
    criteria : Criteria
    """
    c = criteria
    with np.errstate(invalid="ignore"):
        raw = (np.asarray(ev["share_raw"]) >= c.min_share) & (np.asarray(ev["base_rate"])[None, :] < c.max_base_rate)
        distinct = raw & (np.asarray(ev["share_distinct"]) >= c.min_share)
        beyond = distinct & np.asarray(ev["testable"], bool)[None, :] & (np.asarray(ev["q_emotion"]) < c.alpha)
        spatial = beyond & (np.asarray(ev["spatial"]) >= c.min_spatial)
    return {"raw": raw, "distinct": distinct, "beyond_emotion": beyond, "spatial": spatial}


def stage_reached(masks: dict[str, np.ndarray]) -> np.ndarray:
    """(F, A) int8: how many stages of the funnel each pair passes (0 none ... 4 spatial)."""
    return sum(np.asarray(masks[s], dtype=np.int8) for s in STAGES)


def judged_au(masks: dict[str, np.ndarray], ev) -> np.ndarray:
    """(F,) int64: the AU column every view judges a filter by.

    The AU of the deepest stage the filter reaches; among several there, the one with the largest
    within-emotion AUC, then the smallest q. A filter that reaches no stage is judged by its AU
    with the largest lift of the distinct share over the base rate.
    """
    depth = stage_reached(masks).astype(np.float64)  # (F, A)
    auc = np.nan_to_num(np.asarray(ev["auc_emotion"], dtype=np.float64), nan=0.0)
    q = np.nan_to_num(np.asarray(ev["q_emotion"], dtype=np.float64), nan=2.0)
    lift = np.nan_to_num(np.asarray(ev["share_distinct"], dtype=np.float64) - np.asarray(ev["base_rate"])[None, :],
                         nan=-2.0)
    if depth.shape[1] == 0:
        return np.zeros(depth.shape[0], np.int64)
    # lexicographic: depth, then (for reached stages) AUC, then -q; lift for depth 0
    score = np.where(depth > 0, depth * 1e3 + auc * 10 - q * 1e-3, lift)
    return np.argmax(score, axis=1).astype(np.int64)


def _fmt(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.2f}"


def verdict(ev, criteria: Criteria, f: int, a: int) -> list[dict]:
    """The funnel for one filter and AU, stage by stage, in words.

    Returns
    -------
    list of dict
        One per stage of :data:`STAGES`: ``stage``, ``label``, ``passed`` (the stage's own
        condition: bool, or None where it does not apply, i.e. no landmarks), ``in_funnel``
        (this stage and every one before it pass), ``detail`` (the figures against the
        thresholds, and by how much a failed one misses).
    """
    c = criteria
    g = {k: np.asarray(v) for k, v in ev.items()}
    share, dshare = float(g["share_raw"][f, a]), float(g["share_distinct"][f, a])
    base, q = float(g["base_rate"][a]), float(g["q_emotion"][f, a])
    exp_share, spatial = float(g["expected"][f, a]), float(g["spatial"][f, a])
    out = []
    ok_raw = share >= c.min_share and base < c.max_base_rate
    if ok_raw:
        d = f"top-K share {_fmt(share)} ≥ {c.min_share:.2f}; base rate {_fmt(base)} < {c.max_base_rate:.2f}"
    elif not base < c.max_base_rate:
        d = f"base rate {_fmt(base)} is not below {c.max_base_rate:.2f}: too common to be selective"
    else:
        d = f"top-K share {_fmt(share)}, {c.min_share - share:.2f} short of {c.min_share:.2f}"
    out.append({"stage": "raw", "passed": ok_raw, "detail": d})
    ok_d = bool(dshare >= c.min_share)
    d = (f"distinct share {_fmt(dshare)} ≥ {c.min_share:.2f}" if dshare >= c.min_share else
         f"distinct share {_fmt(dshare)}, {c.min_share - dshare:.2f} short of {c.min_share:.2f}"
         if np.isfinite(dshare) else "no distinct image has the AU coded")
    out.append({"stage": "distinct", "passed": ok_d, "detail": d})
    testable = bool(g["testable"][a])
    if not testable:
        d = (f"untestable: the AU varies in {int(g['minority'][a])} units within the emotions "
             f"(needs {c.min_minority})")
        ok_b = False
    else:
        d = (f"within-emotion AUC {auc_with_interval(g, f, a)} over {int(g['n_units'][a])} units, tested against "
             f"{c.min_auc:.2f}: "
             + (f"q = {q:.2g}" + ("" if q < c.alpha else f", not below {c.alpha:g}") if np.isfinite(q) else "no test")
             + power_phrase(g, a)
             + (f"; its distinct list carries the AU {_fmt(dshare)} against the {_fmt(exp_share)} its emotions predict"
                if np.isfinite(exp_share) else ""))
        ok_b = bool(q < c.alpha)
    out.append({"stage": "beyond_emotion", "passed": ok_b, "detail": d})
    if not np.isfinite(spatial):
        out.append({"stage": "spatial", "passed": None, "detail": "no landmarks: not checked"})
    else:
        ok_s = bool(spatial >= c.min_spatial)
        d = (f"{_fmt(spatial)} of the maxima in the AU's region" + ("" if spatial >= c.min_spatial else
             f", {c.min_spatial - spatial:.2f} short of {c.min_spatial:.2f}"))
        out.append({"stage": "spatial", "passed": ok_s, "detail": d})
    chain = True
    for row in out:
        row["label"] = STAGE_LABELS[row["stage"]]
        chain = chain and bool(row["passed"])
        row["in_funnel"] = chain
    return out


def auc_with_interval(ev, f: int, a: int) -> str:
    """``"0.58 [0.49, 0.67]"``: filter ``f``'s within-emotion AUC for AU column ``a`` with its 95 %
    interval (the AUC alone where no interval is stored; "–" where the AU does not vary)."""
    auc = _fmt(float(np.asarray(ev["auc_emotion"])[f, a]))
    if "auc_low" not in ev or not np.isfinite(np.asarray(ev["auc_low"])[f, a]):
        return auc
    return f"{auc} [{_fmt(float(np.asarray(ev['auc_low'])[f, a]))}, {_fmt(float(np.asarray(ev['auc_high'])[f, a]))}]"


def power_phrase(ev, a: int) -> str:
    """What the test could find for AU column ``a`` on this data, as a clause of a verdict:
    "; detectable from AUC 0.71 on this data (80 % power at this layer's burden)", or that no
    filter could be found; "" where the analysis has no power figures."""
    if "detectable_auc" not in ev:
        return ""
    det = float(np.asarray(ev["detectable_auc"])[a])
    if np.isfinite(det):
        return f"; detectable from AUC {det:.2f} on this data ({POWER:.0%} power at this layer's burden)"
    if int(np.asarray(ev["power_status"])[a]) == OUT_OF_REACH:
        return "; out of reach on this data: even a perfect filter would not pass at this layer's burden"
    return ""


class Verdict(list):
    """The rows of :func:`verdict` with the one-sentence :func:`explain` as ``headline``."""

    def __init__(self, rows, headline: str):
        super().__init__(rows)
        self.headline = headline


def explain(ev, criteria: Criteria, f: int, a: int, class_names=(), rows: list[dict] | None = None) -> str:
    """The verdict on filter ``f`` and AU column ``a`` in one sentence, worded from the funnel; it
    explains the apparent conflicts between the top-K share and the within-emotion test.

    The top-K stages look at a filter's few strongest images, the within-emotion test at every
    unit within the emotions: a filter can pass the test while its top-K share only equals what its
    images' emotions predict (its top images are all of one emotion whose faces nearly always carry
    the AU, yet within the emotions where the AU varies it still ranks the AU's units first), or
    carry the AU in its top-K far beyond its emotions while the test fails (the excess rests on
    its few strongest faces). Every view shows this sentence above the stage-by-stage
    :func:`verdict`.

    Parameters
    ----------
    ev : mapping
        The layer's stored figures (:meth:`fercore.store.reader.RunReader.evidence`, with
        ``spatial`` = ``spatial_distinct``); ``auc_class``, ``list_class``, ``list_class_share``
        and ``rates`` are used where present.
    class_names : sequence of str
        The emotion of each class index.
    rows : list of dict, optional
        :func:`verdict` of the same pair, when the caller has it already.
    """
    rows = verdict(ev, criteria, f, a) if rows is None else rows
    g = {k: np.asarray(v) for k, v in ev.items() if not isinstance(v, dict)}
    au = f"AU{int(g['au_ids'][a])}" if "au_ids" in g else f"AU column {a}"
    stage = {r["stage"]: r for r in rows}
    auc = auc_with_interval(g, f, a)
    det = float(g["detectable_auc"][a]) if "detectable_auc" in g else float("nan")
    det_text = f", detectable from {det:.2f} on this data" if np.isfinite(det) else ""
    dshare, exp_share = float(g["share_distinct"][f, a]), float(g["expected"][f, a])
    q = float(g["q_emotion"][f, a])
    test_ok = bool(np.isfinite(q) and q < criteria.alpha and bool(g["testable"][a]))
    lead = _list_words(g, f, a, class_names)
    if not bool(g["testable"][a]):
        return (f"Untestable beyond emotion: {au} varies in {int(g['minority'][a])} units within the emotions "
                f"(needs {criteria.min_minority}), so no filter can be told from an emotion detector for it"
                + (f"; its top-K carries {au} ({_fmt(dshare)}){lead}." if stage["distinct"]["in_funnel"] else "."))
    if stage["beyond_emotion"]["in_funnel"]:
        where = _classes_words(g, f, a, class_names)
        out = (f"Beyond emotion: {where}it tells the units with {au} from those without "
               f"(within-emotion AUC {auc}{det_text}; q = {q:.2g})")
        if stage["spatial"]["passed"] is True:
            out += f", and its maxima lie in {au}'s region"
        elif stage["spatial"]["passed"] is False:
            out += f", but its maxima do not lie in {au}'s region ({stage['spatial']['detail']})"
        if np.isfinite(exp_share) and dshare - exp_share <= 0.05:
            out += (f". Its distinct top-K share ({_fmt(dshare)}) does not exceed what its images' emotions predict "
                    f"({_fmt(exp_share)}){lead}: its strongest faces cannot tell an {au} unit from an emotion "
                    "detector; the within-emotion test, over every unit, can")
        return out + "."
    if test_ok:  # the test passes, a top-K stage before it fails
        fail = first_failure(rows)
        return (f"Not beyond emotion: within the emotions it does separate {au} (AUC {auc}, q = {q:.2g}), but its "
                f"top-K lists do not carry the AU: {fail['label']} fails ({fail['detail']}).")
    if stage["distinct"]["in_funnel"]:
        if np.isfinite(exp_share) and dshare - exp_share > 0.05:
            why = (f"its top-K carries {au} ({_fmt(dshare)}) more often than its emotions predict ({_fmt(exp_share)}), "
                   "but the excess rests on its few strongest faces")
        else:
            why = f"its top-K carries {au} ({_fmt(dshare)}) as often as its images' emotions predict{lead}"
        return (f"Not beyond emotion: {why}; over every unit within the emotions its AUC is {auc}{det_text}, not "
                f"significantly above {criteria.min_auc:.2f} (q = {q:.2g}).")
    fail = first_failure(rows)
    return (f"No evidence for {au}: {fail['label']} fails ({fail['detail']}); within-emotion AUC {auc}{det_text}."
            if fail else f"No evidence for {au}.")


def _list_words(g, f: int, a: int, class_names) -> str:
    """", its distinct list being 94 % happy faces, which carry AU12 at a rate of 1.00" ("" when
    the figures are not stored)."""
    if "list_class" not in g or int(g["list_class"][f]) < 0:
        return ""
    c = int(g["list_class"][f])
    name = class_names[c] if c < len(class_names) else f"class {c}"
    rate = float(g["rates"][c, a]) if "rates" in g else float("nan")
    return (f", its distinct list being {float(g['list_class_share'][f]):.0%} {name} faces"
            + (f", which carry the AU at a rate of {rate:.2f}" if np.isfinite(rate) else ""))


def _classes_words(g, f: int, a: int, class_names) -> str:
    """"within neutral (AUC 0.81) and contempt (0.70) faces, " — the classes where it separates the
    AU best ("" when per-class AUCs are not stored)."""
    if "auc_class" not in g:
        return ""
    per = np.asarray(g["auc_class"][f, a], dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(per) & (per >= 0.6))
    if not len(ok):
        return ""
    best = ok[np.argsort(-per[ok])][:2]
    names = [class_names[c] if c < len(class_names) else f"class {c}" for c in best]
    parts = [f"{names[0]} (AUC {per[best[0]]:.2f})"] + [f"{n} ({per[c]:.2f})" for n, c in zip(names[1:], best[1:],
                                                                                           strict=True)]
    return f"within {' and '.join(parts)} faces, "


def first_failure(rows: list[dict]) -> dict | None:
    """The first stage of a :func:`verdict` that fails (None when every applicable one passes)."""
    return next((r for r in rows if r["passed"] is False), None)
