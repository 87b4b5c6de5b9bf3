"""FAU map: filters × action units under a chosen statistic, each figure beside the null network's
value and each filter marked by whether it survives the controls; the run's honest-evidence
summary; the ranked matches; the data's AU × AU co-occurrence."""

import numpy as np
import streamlit as st

from app import loaders, ui
from app.views import honest

st.title("FAU map")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
au_labels = loaders.au_labels(run_dir, stamp)
au_short = [f"AU{int(a)}" for a in reader.au_ids]

with st.expander("AU-selective filters under the controls (summary)", expanded=True):
    summary = ui.honest_summary(run_dir, stamp, key="fau")
if summary is None:
    st.stop()
nstamp = loaders.null_stamp(run_dir) if summary.null else 0.0

layers = list(reader.layers)
layer = st.session_state.get("sel_layer")
layer = layer if layer in layers else layers[-1]
c1, c2, c3, c4 = st.columns([2, 3, 2, 2])
layer = c1.selectbox("Layer", layers, index=layers.index(layer), key="fau_layer")
st.session_state["sel_layer"] = layer
stat_label = c2.selectbox("Statistic", list(loaders.STATISTICS), key="fau_stat")
order_by = c3.radio("Order filters by", ["cluster", "AU", "index"], horizontal=True, key="fau_order",
                    help="cluster: leaves of a hierarchical clustering of the filters' top-K AU profiles")
key = loaders.STATISTICS[stat_label]
distinct = c4.toggle("Distinct top-K", key="fau_distinct", disabled=key != "topk_share",
                     help="top-K co-occurrence over the distinct top-K list (at most one image per "
                          "sequence, else subject) instead of the raw top-K")
distinct = distinct and key == "topk_share"
null_key = "share_distinct" if distinct else key

fig, df, zname = loaders.fau_heatmap(run_dir, stamp, layer, stat_label, order_by, distinct, nstamp)
order = loaders.filter_order(run_dir, stamp, layer, order_by)
z = df[au_short].to_numpy()
p95 = loaders.null_p95(run_dir, stamp, nstamp, layer, null_key)
event = st.plotly_chart(fig, key="fau_heatmap", on_select="rerun", selection_mode=("points", "box"))
st.caption("✓ after a filter: it is AU-selective for at least one AU under every control (raw, distinct "
           "top-K, beyond emotion" + (", beyond the null" if summary.null else "; the null is not built") +
           "); ✗: it fails at least one.")
suffix = "_distinct" if distinct else ""
ui.csv_button("Heat map data (CSV)", df.to_csv(index_label="filter"), f"{layer}_{key}{suffix}.csv", "dl_heat")
if p95 is not None:
    st.markdown("**Null network, 95th percentile over its filters** (same layer, same statistic, per AU): "
                + " · ".join(f"{a} {v:.2f}" for a, v in zip(au_short, p95, strict=True) if np.isfinite(v)))

picked = None
points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else []
if points:
    p = points[0]
    picked = (int(str(p.get("y", "filter 0")).split()[1]), str(p.get("x")))
    if st.session_state.get("fau_last_pick") != (layer, *picked):  # a new cell: move the pickers to it
        st.session_state["fau_last_pick"] = (layer, *picked)
        st.session_state["fau_filter"] = picked[0]
        if picked[1] in au_short:
            st.session_state["fau_au"] = picked[1]

st.markdown("**Open a filter** — select a cell in the heat map, or pick here:")
c1, c2, c3 = st.columns([2, 2, 1])
filters = [int(f) for f in order]
if st.session_state.get("fau_filter") not in filters:
    st.session_state["fau_filter"] = filters[0]
f = c1.selectbox("Filter", filters, key="fau_filter")
if st.session_state.get("fau_au") not in au_short:
    st.session_state["fau_au"] = au_short[int(np.nanargmax(np.nan_to_num(z[filters.index(f)], nan=-9)))]
au = c2.selectbox("AU", au_short, key="fau_au", format_func=lambda a: au_labels[au_short.index(a)])
j = au_short.index(au)
c3.metric(zname, f"{z[filters.index(f), j]:.3f}")
honest.null_badge(float(z[filters.index(f), j]), None if p95 is None else float(p95[j]),
                  label=f"filter #{f} × {au}, {zname}")
honest.filter_verdict(summary.selectivity[layer], f, au_index=j)
if st.button(f"Open filter #{f} in the Filters view", key="open_filter", type="primary"):
    st.session_state["sel_layer"] = layer
    st.session_state["sel_filter"] = f
    st.switch_page("views/filters.py")

st.subheader("Ranked filter ↔ AU matches")
table, csv = loaders.match_table_honest(run_dir, stamp, nstamp, layer)
st.dataframe(table, hide_index=True, width="stretch", height=320)
st.caption("**survives controls**: the filter–AU pair passes raw, distinct top-K, beyond emotion"
           + (" and beyond the null" if summary.null else " (the null is not built)")
           + "; **fails**: the first control it does not pass.")
ui.csv_button("Match table (CSV)", csv, f"{layer}_matches.csv", "dl_matches")

with st.expander("Every figure next to the null network"):
    honest.figure_table(summary, key="fau_figures")

st.subheader("AU × AU co-occurrence in the data set")
fig2, cooc = loaders.cooc_heatmap(run_dir, stamp, layer)
st.plotly_chart(fig2, key="au_cooc")
ui.csv_button("AU co-occurrence (CSV)", cooc.to_csv(index_label="au"), "au_cooccurrence.csv", "dl_cooc")
