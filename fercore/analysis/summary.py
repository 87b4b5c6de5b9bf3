"""One table per run: how many filters are AU-selective under each control, next to the null.

:func:`summarize` reads a recorded run and its untrained null network (built on demand by
:func:`fercore.null.ensure_null`) and evaluates the criteria of :mod:`fercore.selectivity` on
every recorded layer. :func:`format_summary` prints the result as plain text; the dashboard shows
the same rows (``app/views/honest.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fercore.analysis.criteria import CRITERIA_NAMES, Criteria, Selectivity, selectivity
from fercore.util import Progress, no_progress

__all__ = ["FigureRow", "LayerRow", "Summary", "format_summary", "layer_selectivity", "summarize"]


@dataclass(frozen=True)
class LayerRow:
    """Counts of one layer: filters selective for at least one AU under each criterion.

    Attributes
    ----------
    layer : str
    n_filters : int
    counts : dict of str to int
        Keys :data:`fercore.selectivity.CRITERIA_NAMES`.
    null_counts : dict of str to int
        The null network's counts for ``raw``, ``distinct``, ``beyond_emotion`` (empty without null).
    aus : dict of str to list of int
        AU numbers with at least one selective filter, per criterion.
    groups_in_topk : float
        Mean number of distinct groups (sequences, else subjects) in a filter's plain top-K list.
    k : int
    """

    layer: str
    n_filters: int
    counts: dict
    null_counts: dict
    aus: dict
    groups_in_topk: float
    k: int


@dataclass(frozen=True)
class FigureRow:
    """One selectivity figure of one layer next to its null value.

    ``median`` / ``best`` are over the run's filters of each filter's best AU (largest value);
    ``null_p95`` is the same per-filter value's 95th percentile over the null's filters, and
    ``above_null`` counts the run's filters above it.
    """

    layer: str
    figure: str
    median: float
    best: float
    null_p95: float
    above_null: int


@dataclass
class Summary:
    """The honest-evidence summary of a run.

    Attributes
    ----------
    run : str
    null : str
        Kind of the null network compared with (``""`` when none).
    criteria : Criteria
    n_images, n_groups : int
    rows : list of LayerRow
    figures : list of FigureRow
    selectivity : dict of str to Selectivity
        Per layer, the full (F, A) matrices (for the dashboard's per-filter marks).
    weak_aus : list of int
        AUs whose within-emotion figures rest on too few images (fewer than 20 in classes where
        the AU varies, or fewer than 5 of the rarer value): nothing can tell them from the emotion.
    """

    run: str
    null: str
    criteria: Criteria
    n_images: int
    n_groups: int
    rows: list[LayerRow]
    figures: list[FigureRow] = field(default_factory=list)
    selectivity: dict = field(default_factory=dict, repr=False)
    weak_aus: list = field(default_factory=list)

    def totals(self) -> dict:
        """Counts summed over layers, per criterion."""
        return {c: sum(r.counts[c] for r in self.rows) for c in CRITERIA_NAMES}

    def table(self) -> list[dict]:
        """The layer rows as plain dicts (for a data frame): counts with the null's beside them."""
        out = []
        for r in self.rows:
            d = {"layer": r.layer, "filters": r.n_filters, "groups in top-K": round(r.groups_in_topk, 1)}
            for c in CRITERIA_NAMES:
                d[_LABELS[c]] = r.counts[c]
                if c in r.null_counts:
                    d[f"{_LABELS[c]} (null)"] = r.null_counts[c]
            d["AUs (all)"] = ", ".join(f"AU{a}" for a in r.aus["all"]) or "-"
            out.append(d)
        return out


_LABELS = {"raw": "raw", "distinct": "distinct", "beyond_emotion": "beyond emotion",
           "beyond_null": "beyond null", "all": "all"}


def _topk_index(reader, layer: str, *, distinct: bool) -> np.ndarray:
    n = reader.n_filters(layer)
    return np.stack([reader.topk(layer, f, distinct=distinct).index for f in range(n)]).astype(np.int64)


def layer_selectivity(reader, layer: str, *, null_reader=None, criteria: Criteria | None = None) -> Selectivity:
    """The criteria of one recorded layer of an opened run (and of its null's same layer).

    Parameters
    ----------
    reader : fercore.reader.RunReader
    layer : str
    null_reader : fercore.reader.RunReader, optional
        The null network recorded on the same data.
    criteria : Criteria, optional

    Returns
    -------
    Selectivity
    """
    fs = reader.faceset()
    pres = fs.au_present
    null = None
    if null_reader is not None:
        if null_reader.header.get("faceset_hash") != reader.header.get("faceset_hash"):
            raise ValueError(
                f"{null_reader.run_dir}: the null was recorded on other data than {reader.run_dir}; "
                f"delete {null_reader.run_dir} and run `python -m fercore null --run {reader.name}`")
        null = selectivity(
            null_reader.max_activations(layer), _topk_index(null_reader, layer, distinct=False), pres, fs.labels,
            distinct_index=_topk_index(null_reader, layer, distinct=True), au_ids=fs.au_ids,
            class_names=fs.class_names, criteria=criteria,
        )
    return selectivity(
        reader.max_activations(layer), _topk_index(reader, layer, distinct=False), pres, fs.labels,
        distinct_index=_topk_index(reader, layer, distinct=True), au_ids=fs.au_ids,
        class_names=fs.class_names, null=null, criteria=criteria,
    )


def _per_filter_best(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 1:
        return v
    ok = ~np.isnan(v).all(axis=1)
    out = np.full(len(v), np.nan)
    out[ok] = np.nanmax(v[ok], axis=1)
    return out


def _figure_row(layer: str, name: str, run_v: np.ndarray, null_v: np.ndarray | None, q: float) -> FigureRow:
    r = _per_filter_best(run_v)
    r = r[~np.isnan(r)]
    p95 = np.nan
    above = 0
    if null_v is not None:
        n = _per_filter_best(null_v)
        n = n[~np.isnan(n)]
        if len(n):
            p95 = float(np.quantile(n, q))
            above = int((r > p95).sum())
    return FigureRow(layer, name, float(np.median(r)) if len(r) else np.nan,
                     float(r.max()) if len(r) else np.nan, p95, above)


def _figures(layer: str, sel: Selectivity, null_sel: Selectivity | None, reader, null_reader, q: float) -> list[FigureRow]:
    pairs = {
        "top-K AU share": (sel.share_raw, None if null_sel is None else null_sel.share_raw),
        "distinct top-K AU share": (sel.share_distinct, None if null_sel is None else null_sel.share_distinct),
        "correlation with AU": (sel.confound.r_au, None if null_sel is None else null_sel.confound.r_au),
        "partial corr. given emotion": (sel.confound.r_partial, None if null_sel is None else null_sel.confound.r_partial),
    }
    # KL and spatial score come from the records' analysis when it has run.
    for name, attr in (("KL selectivity", "kl"), ("spatial score", "spatial")):
        try:
            rv = getattr(reader.au_stats(layer), attr)
        except (FileNotFoundError, ValueError, KeyError):
            continue
        nv = None
        if null_reader is not None:
            try:
                nv = getattr(null_reader.au_stats(layer), attr)
            except (FileNotFoundError, ValueError, KeyError):
                nv = None
        pairs[name] = (rv, nv)
    return [_figure_row(layer, name, rv, nv, q) for name, (rv, nv) in pairs.items()]


def summarize(
    run_dir: str | Path,
    *,
    null: str | None = "untrained",
    criteria: Criteria | None = None,
    build_null: bool = True,
    progress: Progress | None = None,
) -> Summary:
    """Count AU-selective filters of every recorded layer under each control.

    Parameters
    ----------
    run_dir : path or str
        A recorded run (directory, run name or unique prefix).
    null : {"untrained", "shuffled"} or None
        The null network to compare with; built (recorded, analysed) when missing. None skips
        the null (``beyond_null`` and ``all`` are then 0).
    criteria : Criteria, optional
    build_null : bool
        When False, a null that is not recorded yet is not built and the summary goes without
        it (``Summary.null`` is ``""``): what a dashboard view that only reads wants.
    progress : callable, optional
        Passed to :func:`fercore.null.ensure_null`, then ``progress(i, n_layers, "summary")``.

    Returns
    -------
    Summary
    """
    from fercore.store.reader import open_run

    progress = progress or no_progress
    crit = criteria or Criteria()
    reader = open_run(run_dir)
    if not reader.has_records:
        raise FileNotFoundError(reader.records_error)
    null_reader = None
    if null is not None:
        from fercore.analysis.nulls import ensure_null, null_status

        if build_null:
            null_reader = open_run(ensure_null(reader.run_dir, kind=null, progress=progress))
        elif null_status(reader.run_dir, null)["recorded"]:
            null_reader = open_run(null_status(reader.run_dir, null)["dir"])
        else:
            null = None
    fs = reader.faceset()
    groups = fs.groups
    rows, figures, sels = [], [], {}
    k = int(reader.header.get("k", 0))
    for i, layer in enumerate(reader.layers):
        progress(i, len(reader.layers), "summary")
        null_sel = None
        if null_reader is not None:
            null_sel = layer_selectivity(null_reader, layer, criteria=crit)
        sel = layer_selectivity(reader, layer, null_reader=null_reader, criteria=crit)
        sels[layer] = sel
        idx = _topk_index(reader, layer, distinct=False)
        n_groups_top = np.mean([len(set(groups[row[row >= 0]])) for row in idx]) if len(idx) else 0.0
        rows.append(LayerRow(
            layer=layer, n_filters=sel.n_filters,
            counts={c: sel.count(c) for c in CRITERIA_NAMES},
            null_counts=dict(sel.null_counts),
            aus={c: sel.aus(c) for c in CRITERIA_NAMES},
            groups_in_topk=float(n_groups_top), k=k,
        ))
        figures += _figures(layer, sel, null_sel, reader, null_reader, crit.null_quantile)
    progress(len(reader.layers), len(reader.layers), "summary")
    weak = []
    if sels:
        conf = next(iter(sels.values())).confound
        weak = [int(a) for a, w in zip(conf.au_ids, conf.weak_partial, strict=True) if w]
    return Summary(
        run=reader.name, null=null or "", criteria=crit, n_images=len(fs), n_groups=len(set(groups)),
        rows=rows, figures=figures, selectivity=sels, weak_aus=weak,
    )


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"


def _grid(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))  # noqa: E731
    return [line(header), "  ".join("-" * w for w in widths), *[line(r) for r in body]]


def format_summary(summary: Summary) -> str:
    """The summary as a plain-text table (what ``python -m fercore summary`` prints).

    Each count reads ``run (null)``: filters of the run selective for at least one AU, and in
    brackets the same count for the null network's filters.
    """
    c = summary.criteria
    null = summary.null or "none"
    out = [
        f"run {summary.run}: {summary.n_images} images in {summary.n_groups} groups (sequences, else subjects); "
        f"null network: {null}",
        "AU-selective filters (at least one AU), run (null):",
        f"  raw            >= {c.min_share:.0%} of the top-K share an AU whose base rate is < {c.max_base_rate:.0%}",
        "  distinct       the same on the top-K list with at most one image per group",
        f"  beyond emotion distinct share exceeds the share the top images' emotions predict "
        f"({c.excess} excess >= {c.min_excess:.2f}{', relative = (obs - exp) / (1 - exp)' if c.excess == 'relative' else ''}),",
        f"                 and the partial corr. given emotion is > 0 with BH q < {c.alpha:g}, "
        "on >= 20 images (>= 5 of the rarer AU value)",
        f"  beyond null    distinct share above the null's {c.null_quantile * 100:.0f}th percentile (same layer, same AU)",
        "  all            every criterion at once",
        "",
    ]
    header = ["layer", "filters", "groups/top-K", "raw", "distinct", "beyond emotion", "beyond null", "all", "AUs (all)"]
    body = []
    for r in summary.rows:
        def cell(name, r=r):
            v = str(r.counts[name])
            return f"{v} ({r.null_counts[name]})" if name in r.null_counts else v

        body.append([
            r.layer, str(r.n_filters), f"{r.groups_in_topk:.1f}/{r.k}", cell("raw"), cell("distinct"),
            cell("beyond_emotion"), str(r.counts["beyond_null"]) if summary.null else "-",
            str(r.counts["all"]) if summary.null else "-",
            " ".join(f"AU{a}" for a in r.aus["all"]) or "-",
        ])
    out += _grid(header, body)
    if summary.weak_aus:
        out += ["", "AUs that too few images tell apart from the emotion (no beyond-emotion claim possible): "
                + " ".join(f"AU{a}" for a in summary.weak_aus)]
    if summary.figures:
        out += ["", "Figures (per filter, its best AU): run median / best, null 95th percentile, run filters above it:"]
        out += _grid(
            ["layer", "figure", "median", "best", "null p95", "above null"],
            [[f.layer, f.figure, _fmt(f.median), _fmt(f.best), _fmt(f.null_p95), str(f.above_null) if summary.null else "-"]
             for f in summary.figures],
        )
    return "\n".join(out)
