"""Components that put every filter-AU figure next to its controls: the funnel summary, the
verdict of one filter, a figure beside the null network's value.

Layout only: the data comes in through the arguments (the stored summary, the verdict rows of
:func:`fercore.analysis.criteria.verdict`); nothing here reads files or computes a statistic.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from fercore.analysis.criteria import STAGE_LABELS, STAGES

__all__ = ["funnel_caption", "funnel_display", "funnel_frame", "funnel_line", "funnel_line_text", "null_badge",
           "null_badge_text", "power_caption", "power_frame", "power_range", "power_tables", "summary_table",
           "verdict_lines"]


#: The null networks in words (``summary["null"]``).
NULL_WORDS = {
    "untrained": "same architecture, untrained, same images",
    "shuffled": "same architecture trained on shuffled labels, same images",
    "permuted": "the same network with the entries of every weight tensor permuted and batch norm re-estimated, "
                "same images",
}


def funnel_caption(criteria: dict, k: int, null: str = "untrained") -> str:
    """What each stage of the funnel means, with the run's thresholds."""
    c = criteria
    return (
        f"Each stage is a subset of the one before. **raw**: at least {c['min_share']:.0%} of the filter's "
        f"top-{k} images carry an AU whose base rate is below {c['max_base_rate']:.0%}. **distinct top-K**: the "
        "same when each sequence (else subject) counts once. **beyond emotion**: the filter tells the units that "
        "carry the AU from those that do not *within the emotions* — a within-emotion permutation test over the "
        f"units that carry the AU codes: the within-emotion AUC is significantly above {c['min_auc']:.2f} "
        f"(Benjamini–Hochberg q < {c['alpha']:g}). **in the AU's region**: at least {c['min_spatial']:.0%} of the distinct list's "
        "maxima lie in the AU's face region (where the data has landmarks). Beside each count (· null): the same "
        f"count for the null network ({NULL_WORDS.get(null or 'untrained', null)})."
    )


def funnel_frame(summary: dict) -> pd.DataFrame:
    """One row per layer: the count of each stage, the null's beside it, the AUs beyond emotion."""
    rows = []
    for r in summary["layers"]:
        d = {"layer": r["layer"], "filters": r["n_filters"]}
        for s in STAGES:
            d[STAGE_LABELS[s]] = r["stages"][s]["filters"]
            if "null_stages" in r:
                d[f"{STAGE_LABELS[s]} (null)"] = r["null_stages"][s]["filters"]
        e = r["stages"]["beyond_emotion"]["expected_false"]
        d["expected false (beyond emotion)"] = None if e is None else round(e, 2)
        d["AUs beyond emotion"] = ", ".join(f"AU{a}" for a in r["stages"]["beyond_emotion"]["aus"]) or "–"
        d["detectable AUC (range over AUs)"] = power_range(r) or "–"
        rows.append(d)
    return pd.DataFrame(rows)


def power_range(layer_row: dict) -> str | None:
    """``"0.68–0.83"``: the smallest and largest detectable within-emotion AUC over the layer's
    testable AUs (None before power was stored, or when no AU is detectable)."""
    det = [r["detectable_auc"] for r in (layer_row.get("power") or {}).get("aus", []) if r["detectable_auc"] is not None]
    if not det:
        return None
    lo, hi = min(det), max(det)
    return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}–{hi:.2f}"


def power_frame(summary: dict, layer: str) -> pd.DataFrame | None:
    """One row per AU of ``layer``: what the beyond-emotion test could find on this data next to
    the layer's best filter for the AU (None before power was stored)."""
    row = next((r for r in summary.get("layers", []) if r["layer"] == layer and "power" in r), None)
    if row is None:
        return None
    out = []
    for r in row["power"]["aus"]:
        det = r["status"] if r["detectable_auc"] is None else f"{r['detectable_auc']:.2f} (r {r['detectable_r']:.2f})"
        best = "–" if r["best_auc"] is None else (
            f"{r['best_auc']:.2f}" + ("" if r["best_low"] is None else f" [{r['best_low']:.2f}, {r['best_high']:.2f}]"))
        found = "yes" if r["found"] else ("test only" if r.get("test_passed") else "no")
        out.append({"AU": f"AU{r['au']}", "units": r["units"], "detectable AUC": det,
                    "best filter": "–" if r["best_filter"] is None else f"#{r['best_filter']}",
                    "its AUC [95 % CI]": best, "found": found})
    return pd.DataFrame(out)


def power_caption(summary: dict, layer: str) -> str:
    """How to read :func:`power_frame`."""
    row = next((r for r in summary.get("layers", []) if r["layer"] == layer and "power" in r), None)
    thr = "" if row is None else f" (a found pair needs p ≤ {row['power']['bh_threshold']:.2g})"
    return ("**detectable AUC**: the smallest within-emotion AUC the beyond-emotion test finds with 80 % probability "
            f"on this data at the layer's multiple-testing burden{thr}, from filters planted into the data's own "
            "units; r: the same effect as a partial correlation given the emotion. **its AUC**: the layer's filter "
            "with the largest within-emotion AUC, 95 % interval over units. **found**: a filter is beyond emotion "
            "for the AU; *test only*: a filter passes the within-emotion test but its top-K lists do not pass the "
            "stages before it. *untestable*: too few units within the emotions show the AU and its absence; "
            "*out of reach*: not even a perfect filter would pass on this data.")


def power_tables(summary: dict, *, key: str | None = None) -> None:
    """Draw :func:`power_frame` for every layer (deepest first, a layer column) with its caption."""
    layers = [r["layer"] for r in summary.get("layers", []) if "power" in r][::-1]
    if not layers:
        return
    frame = pd.concat([power_frame(summary, layer).assign(layer=layer) for layer in layers], ignore_index=True)
    st.dataframe(frame[["layer", *[c for c in frame.columns if c != "layer"]]], hide_index=True, width="stretch",
                 height=320, key=key)
    st.caption(power_caption(summary, layers[0]))


def funnel_display(summary: dict) -> pd.DataFrame:
    """The funnel as shown: one row per layer, the AUs first, each stage's count with the null
    network's beside it (``"12 · null 3"``), so the table fits a 1400 px page."""
    rows = []
    for r in summary["layers"]:
        d = {"layer": r["layer"],
             "AUs beyond emotion": ", ".join(f"AU{a}" for a in r["stages"]["beyond_emotion"]["aus"]) or "–",
             "filters": r["n_filters"]}
        for s in STAGES:
            n = r["stages"][s]["filters"]
            d[STAGE_LABELS[s]] = f"{n} · null {r['null_stages'][s]['filters']}" if "null_stages" in r else str(n)
        e = r["stages"]["beyond_emotion"]["expected_false"]
        d["expected false"] = "–" if e is None else f"{e:.2g}"
        rows.append(d)
    return pd.DataFrame(rows)


def summary_table(summary: dict, *, key: str | None = None) -> None:
    """Draw the funnel of every layer (or the warnings that replace it) with its caption and a
    CSV of the counts."""
    for w in summary.get("warnings", []):
        st.warning(w)
    if summary.get("warnings"):
        st.caption("The counts are withheld: with the warning above they would not be evidence.")
        return
    st.table(funnel_display(summary), hide_index=True, border="horizontal")
    st.caption(funnel_caption(summary["criteria"], summary["k"], summary.get("null") or "untrained")
               + " **expected false**: the expected false "
               "discoveries among the filters beyond emotion (Benjamini–Hochberg's bound).")
    if summary.get("untestable_aus"):
        st.caption("Untestable (too few units within the emotions show the AU and its absence): "
                   + " ".join(f"AU{a}" for a in summary["untestable_aus"]))
    if any("power" in r for r in summary["layers"]):
        with st.expander("What the beyond-emotion test could find on this data: the detectable effect per AU"):
            power_tables(summary, key=None if key is None else f"{key}_power")
    st.download_button("Funnel (CSV)", data=funnel_frame(summary).to_csv(index=False).encode(),
                       file_name="funnel.csv", mime="text/csv", key=None if key is None else f"{key}_csv")


def funnel_line_text(summary: dict, layer: str) -> str | None:
    """One layer's funnel in a line: each stage's count of filters with the null network's
    beside it, and the AUs beyond emotion (None when the summary has no such layer)."""
    row = next((r for r in summary.get("layers", []) if r["layer"] == layer), None)
    if row is None:
        return None
    parts = []
    for s in STAGES:
        n = row["stages"][s]["filters"]
        parts.append(f"{STAGE_LABELS[s]} **{n}**" + (f" (null {row['null_stages'][s]['filters']})"
                                                    if "null_stages" in row else ""))
    aus = ", ".join(f"AU{a}" for a in row["stages"]["beyond_emotion"]["aus"]) or "none"
    reach = power_range(row)
    return (f"**{layer}**, {row['n_filters']} filters: " + " → ".join(parts) + f"; AUs beyond emotion: {aus}"
            + (f"; the test finds a within-emotion AUC from **{reach}** (by AU, 80 % power on this data)" if reach else ""))


def funnel_line(summary: dict, layer: str) -> None:
    """Draw :func:`funnel_line_text` (or the warnings that withhold the counts)."""
    for w in summary.get("warnings", []):
        st.warning(w)
    if summary.get("warnings"):
        return
    text = funnel_line_text(summary, layer)
    if text:
        st.markdown(text + "  \n:gray[Filters that reach each stage of the funnel of controls; the stages, their "
                           "thresholds and every layer: the Overview.]")


def verdict_lines(rows: list[dict], au: str) -> None:
    """The verdict on one filter × AU in one sentence (the rows' ``headline``, where given), then
    the funnel stage by stage, naming what fails and by how much."""
    marks = {True: "✓", False: "✗", None: "–"}
    headline = getattr(rows, "headline", None)
    st.markdown(f"**{au}** — " + " · ".join(f"{r['label']} {marks[r['passed']]}" for r in rows) + "  \n"
                + (f"{headline}  \n" if headline else "")
                + "  \n".join(f":gray[{marks[r['passed']]} {r['label']}: {r['detail']}]" for r in rows))


def null_badge_text(value: float, null_p95: float | None, *, digits: int = 3) -> str:
    """``"0.812 · null 0.62"``: a figure (``digits`` significant digits) and the null network's
    95th percentile for the same AU."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if null_p95 is None or (isinstance(null_p95, float) and math.isnan(null_p95)):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} · null {null_p95:.{digits}g}"


def null_badge(value: float, null_p95: float | None, *, label: str = "", digits: int = 3) -> None:
    """A figure beside the null's 95th percentile: green when above it, grey otherwise. The label
    stands on its own line above the badge, so neither is cut off in a narrow column."""
    text = null_badge_text(value, null_p95, digits=digits)
    beats = (value is not None and null_p95 is not None and not math.isnan(float(value))
             and not math.isnan(float(null_p95)) and value > null_p95)
    st.markdown((f"{label}  \n" if label else "") + f":{'green' if beats else 'gray'}-badge[{text}]")
