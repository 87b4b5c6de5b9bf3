"""FAU map: filters × action units under a chosen statistic; the data's AU × AU co-occurrence."""

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, loaders, ui

st.title("FAU map")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
au_labels = loaders.au_labels(run_dir, stamp)
au_short = [f"AU{int(a)}" for a in reader.au_ids]

layers = list(reader.layers)
layer = st.session_state.get("sel_layer")
layer = layer if layer in layers else layers[-1]
c1, c2, c3 = st.columns([2, 3, 2])
layer = c1.selectbox("Layer", layers, index=layers.index(layer), key="fau_layer")
st.session_state["sel_layer"] = layer
stat_label = c2.selectbox("Statistic", list(loaders.STATISTICS), key="fau_stat")
order_by = c3.radio("Order filters by", ["cluster", "AU", "index"], horizontal=True, key="fau_order",
                    help="cluster: leaves of a hierarchical clustering of the filters' top-K AU profiles")

stats = loaders.au_stats(run_dir, stamp, layer)
key = loaders.STATISTICS[stat_label]
order = loaders.filter_order(run_dir, stamp, layer, order_by)
z = stats[key]
zmid = 0.0
colorscale = "RdBu_r"
if key == "qval":
    z = -np.log10(np.clip(z, 1e-300, 1.0))
    zmid, colorscale = None, "Oranges"
elif key == "kl":  # one value per filter: shown against each AU's top-K share
    z = np.repeat(z[:, None], len(au_short), axis=1)
    zmid, colorscale = None, "Oranges"
elif key == "topk_share":
    z = z - stats["base_rate"][None, :]
z = z[order]
ylabels = [f"filter {int(f)}" for f in order]
zname = "top-K share − base rate" if key == "topk_share" else stat_label
fig = figures.heatmap(z, x=au_short, y=ylabels, title=f"{layer}: filters × AUs ({zname})", zlabel=zname,
                      colorscale=colorscale, zmid=zmid)
event = st.plotly_chart(fig, key="fau_heatmap", on_select="rerun", selection_mode=("points", "box"))
df = pd.DataFrame(z, index=ylabels, columns=au_short)
ui.csv_button("Heat map data (CSV)", df.to_csv(index_label="filter"), f"{layer}_{key}.csv", "dl_heat")

picked = None
points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else []
if points:
    p = points[0]
    picked = (int(str(p.get("y", "filter 0")).split()[-1]), str(p.get("x")))

st.markdown("**Open a filter** — select a cell in the heat map, or pick here:")
c1, c2, c3 = st.columns([2, 2, 1])
filters = [int(f) for f in order]
f_default = picked[0] if picked else filters[0]
f = c1.selectbox("Filter", filters, index=filters.index(f_default), key="fau_filter")
au_default = picked[1] if picked and picked[1] in au_short else au_short[int(np.nanargmax(z[filters.index(f)]))]
au = c2.selectbox("AU", au_short, index=au_short.index(au_default), key="fau_au",
                  format_func=lambda a: au_labels[au_short.index(a)])
j = au_short.index(au)
c3.metric(zname, f"{z[filters.index(f), j]:.3f}")
if st.button(f"Open filter #{f} in the Filters view", key="open_filter", type="primary"):
    st.session_state["sel_layer"] = layer
    st.session_state["sel_filter"] = f
    st.switch_page("views/filters.py")

st.subheader("Ranked filter ↔ AU matches")
table, csv = loaders.match_table(run_dir, stamp, layer)
st.dataframe(table, hide_index=True, width="stretch", height=320)
ui.csv_button("Match table (CSV)", csv, f"{layer}_matches.csv", "dl_matches")

st.subheader("AU × AU co-occurrence in the data set")
cooc = stats["au_cooc"]
fig2 = figures.heatmap(cooc, x=au_short, y=au_short, title="Share of images where both AUs are present",
                       zlabel="co-occurrence", colorscale="Oranges", zmid=None, height=520)
st.plotly_chart(fig2, key="au_cooc")
ui.csv_button("AU co-occurrence (CSV)", pd.DataFrame(cooc, index=au_short, columns=au_short).to_csv(index_label="au"),
              "au_cooccurrence.csv", "dl_cooc")
