"""FAU map: filters × action units under a chosen stored figure, the funnel of controls, the ranked
filter × AU evidence, the data's AU × AU co-occurrence."""

import numpy as np
import streamlit as st

from app import components, loaders, ui

st.title("FAU map")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
au_labels = loaders.au_labels(run_dir, stamp)
au_short = [f"AU{int(a)}" for a in reader.au_ids]

with st.expander("AU-selective filters: the funnel of controls", expanded=True):
    summary = ui.honest_summary(run_dir, stamp, key="fau")

layers = list(reader.layers)
layer = st.session_state.get("sel_layer")
layer = layer if layer in layers else layers[-1]
c1, c2, c3 = st.columns([2, 3, 3])
layer = c1.selectbox("Layer", layers, index=layers.index(layer), key="fau_layer")
st.session_state["sel_layer"] = layer
stat_label = c2.selectbox("Figure", list(loaders.STATISTICS), key="fau_stat")
order_by = c3.radio("Order filters by", ["evidence", "cluster", "index"], horizontal=True, key="fau_order",
                    help="evidence: the deepest stage of the funnel first; cluster: filters that prefer the same "
                         "AUs together")
key = loaders.STATISTICS[stat_label]

fig, df, zname = loaders.fau_heatmap(run_dir, stamp, layer, stat_label, order_by)
order = loaders.filter_order(run_dir, stamp, layer, order_by)
ev = loaders.evidence(run_dir, stamp, layer)
event = st.plotly_chart(fig, key="fau_heatmap", on_select="rerun", selection_mode=("points", "box", "lasso"))
st.caption("Rows: filters, labelled by the deepest stage of the funnel they reach for any AU; a ring marks a "
           "filter × AU pair that passes the beyond-emotion stage.")
ui.csv_button("Heat map data (CSV)", df.to_csv(index_label="filter", float_format="%.3g"), f"{layer}_{key}.csv",
              "dl_heat")
null = ev.get("null") or {}
if key in null:
    st.markdown("**Null network, 95th percentile over its filters** (same layer, same figure, per AU): "
                + " · ".join(f"{a} {v:.2f}" for a, v in zip(au_short, null[key], strict=True) if np.isfinite(v)))

points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else []
if points:
    p = points[0]
    picked = (int(str(p.get("y", "#0")).split()[0].lstrip("#")), str(p.get("x")))
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
    st.session_state["fau_au"] = au_short[int(ev["judged"][f])]
au = c2.selectbox("AU", au_short, key="fau_au", format_func=lambda a: au_labels[au_short.index(a)])
j = au_short.index(au)
value = float(df[au].iloc[filters.index(f)])
c3.markdown(f"**{zname}**  \n{value:.3g}")
components.null_badge(float(ev[key][f, j]), float(null[key][j]) if key in null else None,
                      label=f"filter #{f} × {au}, {stat_label}")
components.verdict_lines(loaders.verdict(run_dir, stamp, layer, f, j), au_labels[j])
if st.button(f"Open filter #{f} in the Filters view", key="open_filter", type="primary"):
    st.session_state["sel_layer"] = layer
    st.session_state["sel_filter"] = f
    st.session_state["sel_au"] = j
    st.switch_page("views/filters.py")

st.subheader("Ranked filter × AU evidence")
table = loaders.evidence_table(run_dir, stamp, (layer,))
st.dataframe(table, hide_index=True, width="stretch", height=320,
             column_config={c: st.column_config.NumberColumn(format="%.3g") for c in table.columns
                            if table[c].dtype.kind == "f"})
st.caption("Pairs whose distinct top-K share is above the AU's base rate, ranked by the deepest stage of the "
           "funnel they reach, then the within-emotion test's q, then the excess share. The same table for "
           "every layer: `python -m fercore analyze --csv FILE`.")
ui.csv_button("Evidence table (CSV)", loaders.evidence_csv(run_dir, stamp, (layer,)), f"{layer}_evidence.csv",
              "dl_matches")

st.subheader("AU × AU co-occurrence in the data set")
fig2, cooc = loaders.cooc_heatmap(run_dir, stamp)
st.plotly_chart(fig2, key="au_cooc")
ui.csv_button("AU co-occurrence (CSV)", cooc.to_csv(index_label="au", float_format="%.3g"), "au_cooccurrence.csv",
              "dl_cooc")
