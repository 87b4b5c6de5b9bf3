"""Filters: every filter of a layer by its top patch, marked by the deepest stage of the funnel it
reaches; one filter's verdict stage by stage, its figures beside the null network's, its top-K
(raw or distinct), sources, projections (deconvnet or guided backpropagation) and AU profile.

Layer, filter, AU and *distinct* are the shared view state (:mod:`app.state`): what the FAU map
selected is shown here, and the address reproduces it."""

from functools import partial

import pandas as pd
import streamlit as st

from app import charts, components, figures, loaders, state, ui
from fercore.analysis.criteria import auc_with_interval

st.title("Filters")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
au_labels = loaders.au_labels(run_dir, stamp)
au_ids = [int(a) for a in reader.au_ids]


def _layer_changed() -> None:  # a new layer: its filter with the most evidence, judged by its AU
    state.view().pop("filter", None)
    state.view().pop("au", None)


def _filter_changed() -> None:  # a new filter is judged by its own AU first
    ev_ = loaders.evidence(run_dir, stamp, state.get("layer"))
    state.put("au", au_ids[int(ev_["judged"][int(state.get("filter"))])])


layers = list(reader.layers)
c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
layer = state.selectbox(c1, "Layer", layers, name="layer", key="filters_layer", default=layers[-1],
                        on_change=_layer_changed)
order_by = c2.radio("Sort filters by", ["evidence", "cluster", "index"], horizontal=True, key="filters_sort",
                    help="evidence: the deepest stage of the funnel first; cluster: filters that prefer the same AUs together")
kind = c3.radio("Show each filter by", ["patch", "deconv"], horizontal=True, key="filters_kind",
                format_func=lambda k: {"patch": "patch", "deconv": "projection"}[k],
                help="its top image patch, or the projection of its top activation (deconvnet for a network "
                     "trained here, guided backpropagation for any other)")
distinct = state.toggle(c4, "Distinct", name="distinct", key="filters_distinct",
                        help="one image per sequence (or subject) in the top-K, instead of the raw top-K; "
                             "kept for every view")

ev = loaders.evidence(run_dir, stamp, layer)
judged = ev["judged"]
depth = ev["stage"].max(axis=1)
order = loaders.filter_order(run_dir, stamp, layer, order_by)
n = len(order)
captions = tuple(f"#{f} AU{int(ev['au_ids'][judged[f]])}\n{figures.STAGE_SHORT[int(depth[f])]}" for f in order)
st.subheader(f"All {n} filters of {layer}")
if kind == "deconv" and not ui.projections_or_wait(run_dir, stamp, layer, None,
                                                  what=f"the projection of every filter's top image of {layer}"):
    kind = "patch"  # the patches meanwhile
grid_png = loaders.filter_grid_png(run_dir, stamp, layer, kind, tuple(int(i) for i in order), captions)
projection = loaders.projection_words(run_dir, stamp, layer)
st.image(grid_png, caption=f"{n} filters, {'top patch' if kind == 'patch' else projection} each, "
                           f"in {order_by} order", output_format="PNG")
st.caption(f"Under each filter: its number, the AU it is judged by and the deepest stage of the funnel it reaches "
           f"for it ({figures.STAGE_LEGEND}). {int((depth >= 3).sum())} of {n} filters pass beyond emotion. "
           "Pick one below, or click a cell in the FAU map.")
ui.png_button("Filter grid (PNG)", grid_png, f"{layer}_filters.png", "dl_grid")
with st.expander("Filters and controls (table)"):
    grid_table = figures.sig3(pd.DataFrame({
        "filter": [int(f) for f in order],
        "AU judged": [f"AU{int(ev['au_ids'][judged[f]])}" for f in order],
        "stage reached": [figures.STAGE_NAMES[int(depth[f])] for f in order],
        "distinct share": [float(ev["share_distinct"][f, judged[f]]) for f in order],
        "excess share": [float(ev["excess"][f, judged[f]]) for f in order],
        "within-emotion AUC [95 % CI]": [auc_with_interval(ev, f, judged[f]) for f in order],
        "detectable AUC on this data": [float(ev["detectable_auc"][judged[f]]) for f in order],
        "q (Benjamini-Hochberg)": [float(ev["q_emotion"][f, judged[f]]) for f in order],
        "KL selectivity": [float(ev["kl"][f]) for f in order],
    }))
    st.dataframe(grid_table, hide_index=True, width="stretch", key="filters_controls",
                 column_config={c: st.column_config.NumberColumn(format="%.3g")
                                for c in ("distinct share", "excess share", "q (Benjamini-Hochberg)", "KL selectivity",
                                          "detectable AUC on this data")})
    ui.csv_button("Filters and controls (CSV)", partial(figures.csv_text, grid_table), f"{layer}_controls.csv", "dl_controls")

filters = [int(i) for i in order]
f = state.selectbox(st, "Filter", filters, name="filter", key="filters_filter", on_change=_filter_changed,
                    format_func=lambda i: f"#{i} · judged by {au_labels[judged[i]]} · {figures.STAGE_NAMES[int(depth[i])]}")

st.subheader(f"{layer} filter #{f} under the controls")
au = state.selectbox(st, "AU to judge", au_ids, name="au", key="filters_verdict_au",
                     format_func=lambda a: au_labels[au_ids.index(a)],
                     help="default: the AU the analysis judges this filter by (the deepest stage it reaches); "
                          "kept for every view")
j = au_ids.index(au)
components.verdict_lines(loaders.verdict(run_dir, stamp, layer, f, j), au_labels[j])
null = ev.get("null") or {}
figs = [(label, name) for label, name in (
    ("top-K AU share", "share_raw"), ("distinct top-K AU share", "share_distinct"),
    ("within-emotion AUC", "auc_emotion"), ("excess over the emotions", "excess"),
    ("correlation with AU", "r_au"), ("partial correlation given emotion", "r_partial")) if name in ev]
cols = st.columns(len(figs) + 1)
for col, (label, name) in zip(cols, figs, strict=False):
    with col:
        components.null_badge(float(ev[name][f, j]), float(null[name][j]) if name in null else None, label=label)
with cols[-1]:
    components.null_badge(float(ev["kl"][f]), float(null["kl"]) if "kl" in null else None, label="KL selectivity")
st.caption(f"Figures at AU{au}, each beside the null network's 95th percentile over its "
           "filters (same layer, same AU): green when above it.")

p = loaders.filter_panels(run_dir, stamp, layer, f, distinct)
st.subheader(f"{layer} filter #{f}: top {p['n']} images" + (" (distinct)" if distinct else ""))
st.markdown("**Top patches** (activation value under each)")
st.image(p["patches"], width="content", output_format="PNG")
st.markdown("**Source images** with the receptive field box; image number, label and AUs present under each")
st.image(p["sources"], width="content", output_format="PNG")
st.markdown(f"**Projections**: {projection} of each activation onto its receptive field")
if ui.projections_or_wait(run_dir, stamp, layer, f, what=f"the projections of filter #{f}'s top {p['n']} images"):
    proj_png = loaders.projection_panel(run_dir, stamp, layer, f, distinct)
    st.image(proj_png, width="content", output_format="PNG")
    ui.png_button("Projections (PNG)", proj_png, f"{layer}_{f}_projections.png", "dl_projections")
st.caption(f"Made by {projection}: " + ("the unit's activation sent back through the network's convolutions, "
           "ReLUs and max-pool switches" if reader.projection(layer) == "deconvnet" else
           "the gradient of the unit with respect to the input, each ReLU passing back only positive signal "
           "(for networks other than a plain conv / ReLU / max-pool stack)") + ".")
with st.expander(f"The top {p['n']} images (table)"):
    st.dataframe(p["table"], hide_index=True, width="stretch",
                 column_config={"activation": st.column_config.NumberColumn(format="%.3g")})
    ui.csv_button("Top-K images (CSV)", partial(figures.csv_text, p["table"]), f"{layer}_{f}_topk.csv", "dl_topk_csv")
ui.png_button("Top-K sources (PNG)", p["sources"], f"{layer}_{f}_topk.png", "dl_topk")
st.subheader(f"Filter #{f}: AU profile against the base rates")
share = ev["share_distinct"][f] if distinct else ev["share_raw"][f]
which = "distinct top-K" if distinct else "top-K"
# The title stays the same from filter to filter: only the chart's data changes, which Streamlit
# updates in place instead of drawing a new chart.
fig = charts.bars({f"share of {which}": share, "base rate": ev["base_rate"]}, au_labels, value_title="share of images",
                  title=f"How often each AU is present in the filter's {which} images", domain=(0.0, 1.0))
st.vega_lite_chart(fig, key="au_profile", width="content")
profile = figures.sig3(pd.DataFrame({"AU": au_ids, "AU name": au_labels, f"{which} share": share,
                                     "base rate": ev["base_rate"]}))
ui.csv_button("AU profile (CSV)", partial(figures.csv_text, profile), f"{layer}_{f}_au_profile.csv", "dl_profile")
