"""The honest-evidence summary of a run, and its ranked filter x AU table, read from ``records.h5``.

Nothing here computes a statistic: :func:`fercore.analysis.analyze.analyze` stored the funnel of
every layer (for the run and for its null network, by the same code), the figures and the
verdict rules' inputs; this module lays them out for the CLI (``python -m fercore summary``,
``analyze --csv``), for scripts (:func:`summary_dict`, ``summary --json``) and for the dashboard.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from fercore.analysis.criteria import STAGE_LABELS, STAGES, Criteria, explain
from fercore.analysis.power import POWER
from fercore.data.facs import au_name
from fercore.store.reader import RunReader, open_run

__all__ = ["CSV_COLUMNS", "evidence_csv", "evidence_rows", "format_power", "format_summary", "summary_dict"]


def summary_dict(run) -> dict:
    """The stored summary of a run: a JSON-able dict.

    Parameters
    ----------
    run : RunReader or path or str
        An analysed run.

    Returns
    -------
    dict
        ``run``, ``null`` (the null network's kind, "" without one), ``criteria``, ``n_images``,
        ``n_groups``, ``n_units``, ``k``, ``protocol`` (in words), ``warnings`` (list of str: a
        weak run or a data set too small for the test; when not empty the counts are not
        evidence), ``testable_aus``, ``untestable_aus``, and ``layers``: per layer ``layer``,
        ``n_filters``, ``groups_in_topk``, ``stages`` and (with a null) ``null_stages``: per stage
        of :data:`fercore.analysis.criteria.STAGES` the ``filters`` with at least one AU,
        ``pairs`` (filter x AU), ``aus`` involved and ``expected_false`` (the null network's
        count for raw and distinct; for the tested stages Benjamini-Hochberg's bound, alpha x the
        layer's rejections; None where unknown).
    """
    reader = run if isinstance(run, RunReader) else open_run(run)
    return reader.summary()


def _stage_cell(st: dict) -> str:
    return str(st["filters"])


def format_summary(summary: dict) -> str:
    """The summary as plain text (what ``python -m fercore summary`` prints).

    Each count reads ``run (null)``: filters of the run that reach the stage for at least one AU,
    and in brackets the null network's.
    """
    c = Criteria(**summary["criteria"])
    null = summary.get("null") or "none"
    out = [f"run {summary['run']}: {summary['n_images']} images, {summary['n_groups']} groups "
           f"(sequences, else subjects), {summary['n_units']} coded units; null network: {null}"]
    if summary.get("protocol"):
        out.append(f"protocol: {summary['protocol']}")
    for w in summary.get("warnings", []):
        out.append(f"WARNING: {w}")
    out += [
        "",
        "AU-selective filters (at least one AU), each stage a subset of the one before; run (null):",
        f"  raw             >= {c.min_share:.0%} of the top-{summary['k']} carry an AU whose base rate is < {c.max_base_rate:.0%}",
        "  distinct        and the same on the top-K list with at most one image per group",
        "  beyond emotion  and the filter tells units with the AU from units without it within the emotions:",
        f"                  within-emotion AUC significantly above {c.min_auc:.2f} (permutation test over units,",
        f"                  Benjamini-Hochberg q < {c.alpha:g})",
        f"  in AU region    and >= {c.min_spatial:.0%} of the distinct list's maxima lie in the AU's face region (landmarks)",
        "  expected false: the null network's count (raw, distinct); BH's bound alpha x rejections (tested stages)",
        "",
    ]
    if summary.get("warnings"):
        out.append("Counts withheld: the warnings above say why they would not be evidence.")
        return "\n".join(out)
    header = ["layer", "filters", "groups/top-K", *[STAGE_LABELS[s] for s in STAGES], "AUs (beyond emotion)"]
    body = []
    for row in summary["layers"]:
        cells = [row["layer"], str(row["n_filters"]), f"{row['groups_in_topk']:.1f}/{summary['k']}"]
        for s in STAGES:
            v = _stage_cell(row["stages"][s])
            if "null_stages" in row:
                v += f" ({row['null_stages'][s]['filters']})"
            cells.append(v)
        cells.append(" ".join(f"AU{a}" for a in row["stages"]["beyond_emotion"]["aus"]) or "-")
        body.append(cells)
    out += _grid(header, body)
    out += ["", "Expected false discoveries per stage (filters; filter x AU pairs for the tested stages):"]
    for row in summary["layers"]:
        parts = []
        for s in STAGES:
            e = row["stages"][s]["expected_false"]
            parts.append(f"{STAGE_LABELS[s]} {'-' if e is None else (f'{e:.2g}' if isinstance(e, float) else e)}")
        out.append(f"  {row['layer']}: " + ", ".join(parts))
    if summary.get("untestable_aus"):
        out += ["", "Untestable AUs (too few units within the emotions tell them apart from the emotion): "
                + " ".join(f"AU{a}" for a in summary["untestable_aus"])]
    out += format_power(summary)
    return "\n".join(out)


def format_power(summary: dict) -> list[str]:
    """The power tables of :func:`format_summary`: per layer and AU the detectable effect next to
    the layer's best filter for the AU ([] for a summary stored before power was computed)."""
    layers = [r for r in summary["layers"] if "power" in r]
    if not layers:
        return []
    out = ["", f"What the beyond-emotion test could find on this data: a filter whose true within-emotion AUC is at "
           f"least 'detectable' is found with probability {POWER:.0%} at the layer's multiple-testing burden "
           "(planted units on the data's own units; partial r: the same effect as a correlation given the emotion); "
           "'best': the layer's filter with the largest within-emotion AUC, 95 % interval over units; "
           "'found': a filter of the layer is beyond emotion for the AU (its test and, before it, its top-K lists pass)."]
    for row in layers:
        pw = row["power"]
        out += ["", f"{row['layer']} (a found pair needs p <= {pw['bh_threshold']:.2g}):"]
        body = [[f"AU{r['au']}", str(r["units"]), _power_cell(r), _best_cell(r), _found_cell(r)] for r in pw["aus"]]
        out += ["  " + line for line in _grid(["AU", "units", "detectable AUC (partial r)", "best filter: AUC [95 % CI]",
                                                 "found"], body)]
    return out


def _found_cell(r: dict) -> str:
    if r["found"]:
        return "yes"
    if r.get("test_passed"):
        return "no: a filter passes the test, its top-K lists not"
    return "no"


def _power_cell(r: dict) -> str:
    if r["status"] != "detectable":
        return r["status"]
    return f"{r['detectable_auc']:.2f} ({r['detectable_r']:.2f})"


def _best_cell(r: dict) -> str:
    if r["best_filter"] is None or r["best_auc"] is None:
        return "-"
    ci = f" [{r['best_low']:.2f}, {r['best_high']:.2f}]" if r["best_low"] is not None else ""
    return f"#{r['best_filter']}: {r['best_auc']:.2f}{ci}"


def _grid(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return [line(header), "  ".join("-" * w for w in widths), *[line(r) for r in body]]


#: Columns of the ranked CSV (``analyze --csv``), headers in words.
CSV_COLUMNS = (
    "layer", "filter", "AU", "AU name", "stage reached", "verdict", "raw top-K share", "distinct top-K share",
    "expected share given the emotions", "excess share", "within-emotion AUC", "its 95 % interval, low",
    "its 95 % interval, high", "detectable AUC on this data", "within-emotion test p",
    "q (Benjamini-Hochberg)", "units the test rests on", "correlation with AU", "partial correlation given emotion",
    "KL selectivity", "share in the AU region", "null p95 of the distinct share", "null p95 of the within-emotion AUC",
)


def evidence_rows(reader: RunReader, layers: list[str] | None = None) -> list[dict]:
    """One row per filter x AU pair of every layer with a distinct top-K share above the AU's base
    rate, ranked by the controlled evidence: the stage reached, then q, then the within-emotion AUC.

    Keys are :data:`CSV_COLUMNS`; numbers are floats (NaN where a figure does not apply).
    """
    crit = Criteria(**reader.analysis_info()["criteria"])
    rows = []
    for layer in layers or reader.layers:
        ev = reader.evidence(layer)
        base = ev["base_rate"]
        lift = np.nan_to_num(ev["share_distinct"] - base[None, :], nan=-1.0)
        null = ev.get("null") or {}
        with_spatial = {**ev, "spatial": ev["spatial_distinct"]}
        for f, a in zip(*np.nonzero(lift > 0), strict=True):
            f, a = int(f), int(a)
            depth = int(ev["stage"][f, a])
            rows.append({
                "layer": layer, "filter": f, "AU": int(ev["au_ids"][a]), "AU name": au_name(int(ev["au_ids"][a])),
                "stage reached": STAGE_LABELS[STAGES[depth - 1]] if depth else "none",
                "verdict": explain(with_spatial, crit, f, a, reader.class_names),
                "raw top-K share": float(ev["share_raw"][f, a]),
                "distinct top-K share": float(ev["share_distinct"][f, a]),
                "expected share given the emotions": float(ev["expected"][f, a]),
                "excess share": float(ev["excess"][f, a]),
                "within-emotion AUC": float(ev["auc_emotion"][f, a]),
                "its 95 % interval, low": float(ev["auc_low"][f, a]),
                "its 95 % interval, high": float(ev["auc_high"][f, a]),
                "detectable AUC on this data": float(ev["detectable_auc"][a]),
                "within-emotion test p": float(ev["p_emotion"][f, a]),
                "q (Benjamini-Hochberg)": float(ev["q_emotion"][f, a]),
                "units the test rests on": int(ev["n_units"][a]),
                "correlation with AU": float(ev["r_au"][f, a]),
                "partial correlation given emotion": float(ev["r_partial"][f, a]),
                "KL selectivity": float(ev["kl"][f]),
                "share in the AU region": float(ev["spatial_distinct"][f, a]),
                "null p95 of the distinct share": float(null["share_distinct"][a]) if "share_distinct" in null else np.nan,
                "null p95 of the within-emotion AUC": float(null["auc_emotion"][a]) if "auc_emotion" in null else np.nan,
                "_key": (-depth, _nan_last(ev["q_emotion"][f, a]), _nan_last(-ev["auc_emotion"][f, a])),
            })
    rows.sort(key=lambda r: r.pop("_key"))
    return rows


def _nan_last(v) -> float:
    v = float(v)
    return v if np.isfinite(v) else 9.0


def _fmt(v) -> str:
    """Numbers to 3 significant digits; NaN as an empty cell."""
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.3g}"
    return str(v)


def evidence_csv(rows: list[dict]) -> str:
    """:func:`evidence_rows` as CSV text with a header line (3 significant digits)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([_fmt(r[c]) for c in CSV_COLUMNS])
    return buf.getvalue()
