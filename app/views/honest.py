"""Components that put every filter-AU figure next to its controls (null network, emotion, distinct top-K).

Layout only: the data comes in through the arguments (a :class:`fercore.summary.Summary`, figures
and thresholds from :mod:`fercore.selectivity`); nothing here reads files or computes statistics
beyond formatting. Pages call these functions; this module draws nothing when imported.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

__all__ = [
    "CRITERIA_CAPTION",
    "criteria_caption",
    "figure_table",
    "filter_verdict",
    "null_badge",
    "null_badge_text",
    "summary_frame",
    "summary_table",
]

#: What each column of the summary means, for captions and help texts.
CRITERIA_CAPTION = (
    "**raw**: at least {share:.0%} of the filter's top-K images share an AU whose base rate is below "
    "{base:.0%}. **distinct**: the same when each sequence (else subject) counts once in the top-K. "
    "**beyond emotion**: the AU share of the distinct top-K exceeds what those images' emotions "
    "predict ({kind} excess at least {excess:.2f}), and the correlation with the AU stays positive once the emotion "
    "is held constant (Benjamini-Hochberg q < {alpha:g}, at least 20 images). **beyond null**: the "
    "distinct AU share is above the {q:.0f}th percentile of an untrained network of the same "
    "architecture (same layer, same AU). **all**: every criterion. Columns marked (null): the null "
    "network's counts."
)


def criteria_caption(criteria) -> str:
    """The caption text for a :class:`fercore.selectivity.Criteria`."""
    return CRITERIA_CAPTION.format(share=criteria.min_share, base=criteria.max_base_rate,
                                   excess=criteria.min_excess, kind=criteria.excess, alpha=criteria.alpha,
                                   q=criteria.null_quantile * 100)


def summary_frame(summary) -> pd.DataFrame:
    """The summary's layer rows as a data frame (one row per layer, run and null counts side by side)."""
    return pd.DataFrame(summary.table())


def summary_table(summary, *, key: str | None = None) -> None:
    """Draw the summary table with a caption explaining the criteria.

    Parameters
    ----------
    summary : fercore.summary.Summary
    key : str, optional
        Streamlit element key.
    """
    totals = summary.totals()
    null = summary.null or "none"
    st.markdown(
        f"**AU-selective filters** — raw **{totals['raw']}**, distinct top-K **{totals['distinct']}**, "
        f"beyond emotion **{totals['beyond_emotion']}**, beyond the null **{totals['beyond_null']}**, "
        f"all controls **{totals['all']}** (null network: {null})"
    )
    st.dataframe(summary_frame(summary), hide_index=True, width="stretch", key=key)
    st.caption(criteria_caption(summary.criteria))
    weak = getattr(summary, "weak_aus", [])
    if weak:
        st.caption("Too few images tell these AUs apart from the emotion, so no filter can be "
                   "AU-selective beyond emotion for them: " + " ".join(f"AU{a}" for a in weak))


def figure_table(summary, *, key: str | None = None) -> None:
    """Draw every selectivity figure per layer next to the null's 95th percentile."""
    rows = [
        {"layer": f.layer, "figure": f.figure, "median": f.median, "best": f.best,
         "null p95": f.null_p95, "filters above null": f.above_null}
        for f in summary.figures
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key=key)
    st.caption("Per filter, the value for its best AU; median and best over the run's filters; "
               "null p95: 95th percentile of the same value over the untrained network's filters.")


def null_badge_text(value: float, null_p95: float, *, digits: int = 2) -> str:
    """``"0.81 · null p95 0.62 ✓"``: a figure, its null threshold and whether it beats it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if null_p95 is None or (isinstance(null_p95, float) and math.isnan(null_p95)):
        return f"{value:.{digits}f} · no null"
    mark = "✓" if value > null_p95 else "✗ not above null"
    return f"{value:.{digits}f} · null p95 {null_p95:.{digits}f} {mark}"


def null_badge(value: float, null_p95: float, *, label: str = "", digits: int = 2) -> None:
    """Show a figure beside its null value: green when above the null's 95th percentile, grey otherwise."""
    text = null_badge_text(value, null_p95, digits=digits)
    beats = (value is not None and null_p95 is not None and not math.isnan(float(value))
             and not math.isnan(float(null_p95)) and value > null_p95)
    color = "green" if beats else "gray"
    st.markdown(f"{label + ': ' if label else ''}:{color}-badge[{text}]")


def filter_verdict(selectivity, f: int, *, au_index: int | None = None) -> None:
    """Mark which controls filter ``f``'s AU association survives (one line per criterion).

    Parameters
    ----------
    selectivity : fercore.selectivity.Selectivity
        The layer's criteria.
    f : int
        Filter index.
    au_index : int, optional
        Column of the AU to judge; default the filter's best AU by distinct top-K share.
    """
    s = selectivity
    if au_index is None:
        row = s.share_distinct[f]
        au_index = int(pd.Series(row).fillna(-1).idxmax()) if len(row) else 0
    au = int(s.au_ids[au_index])
    marks = []
    for name, label in (("raw", "raw top-K"), ("distinct", "distinct top-K"),
                        ("beyond_emotion", "beyond emotion"), ("beyond_null", "beyond null")):
        if name == "beyond_null" and not s.has_null:
            marks.append(f"{label}: no null")
            continue
        ok = bool(s.matrix(name)[f, au_index])
        marks.append(f"{label}: {'✓' if ok else '✗'}")
    conf = s.confound
    st.markdown(f"**AU{au}** — " + " · ".join(marks))
    st.caption(
        f"top-K share {s.share_raw[f, au_index]:.2f}, distinct {s.share_distinct[f, au_index]:.2f}, "
        f"expected from emotions {s.expected[f, au_index]:.2f}; correlation {conf.r_au[f, au_index]:.2f}, "
        f"partial given emotion {conf.r_partial[f, au_index]:.2f} on {int(conf.n_partial[au_index])} images"
        + (" (weak: few images)" if conf.weak_partial[au_index] else "")
    )
