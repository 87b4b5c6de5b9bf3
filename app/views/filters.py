"""Filters: every filter of a layer by its top patch, marked by the deepest stage of the funnel it
reaches; one filter's verdict stage by stage, its figures beside the null network's, its top-K
(raw or distinct), sources, deconvnet projections and AU profile."""

import pandas as pd
import streamlit as st

from app import components, figures, loaders, ui

st.title("Filters")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
au_labels = loaders.au_labels(run_dir, stamp)

layers = list(reader.layers)
layer = st.session_state.get("sel_layer")
layer = layer if layer in layers else layers[-1]
c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
layer = c1.selectbox("Layer", layers, index=layers.index(layer), key="filters_layer")
st.session_state["sel_layer"] = layer
order_by = c2.radio("Sort filters by", ["evidence", "cluster", "index"], horizontal=True, key="filters_sort",
                    help="evidence: the deepest stage of the funnel first; cluster: filters that prefer the same AUs together")
kind = c3.radio("Show each filter by", ["patch", "deconv"], horizontal=True, key="filters_kind",
                help="its top image patch, or the deconvnet projection of its top activation")
distinct = c4.toggle("Distinct", key="filters_distinct",
                     help="one image per sequence (or subject) in the top-K, instead of the raw top-K")

ev = loaders.evidence(run_dir, stamp, layer)
judged = ev["judged"]
depth = ev["stage"].max(axis=1)
order = loaders.filter_order(run_dir, stamp, layer, order_by)
grid = loaders.filter_grid(run_dir, stamp, layer, kind)
n = len(order)
st.subheader(f"All {n} filters of {layer}")
st.image([grid[f] for f in order], width=72,
         caption=[f"#{f} AU{int(ev['au_ids'][judged[f]])} {figures.STAGE_MARKS[int(depth[f])]}" for f in order])
st.caption(f"Under each filter: the AU it is judged by and the deepest stage of the funnel it reaches "
           f"({int((depth >= 3).sum())} of {n} filters pass beyond emotion).")
ui.png_button("Filter grid (PNG)", loaders.filter_grid_png(run_dir, stamp, layer, kind, tuple(int(i) for i in order)),
              f"{layer}_filters.png", "dl_grid")
with st.expander("Filters and controls (table)"):
    grid_table = pd.DataFrame({
        "filter": [int(f) for f in order],
        "AU judged": [f"AU{int(ev['au_ids'][judged[f]])}" for f in order],
        "stage reached": [figures.STAGE_NAMES[int(depth[f])] for f in order],
        "distinct share": [float(ev["share_distinct"][f, judged[f]]) for f in order],
        "excess share": [float(ev["excess"][f, judged[f]]) for f in order],
        "q": [float(ev["q_emotion"][f, judged[f]]) for f in order],
    })
    st.dataframe(grid_table, hide_index=True, width="stretch", key="filters_controls",
                 column_config={c: st.column_config.NumberColumn(format="%.3g")
                                for c in ("distinct share", "excess share", "q")})
    ui.csv_button("Filters and controls (CSV)", grid_table.to_csv(index=False, float_format="%.3g"),
                  f"{layer}_controls.csv", "dl_controls")

f_sel = st.session_state.get("sel_filter")
f_sel = int(f_sel) if f_sel is not None and 0 <= int(f_sel) < n else int(order[0])
f = st.selectbox("Filter", [int(i) for i in order], index=[int(i) for i in order].index(f_sel), key="filters_filter",
                 format_func=lambda i: f"#{i} · judged by {au_labels[judged[i]]} · {figures.STAGE_NAMES[int(depth[i])]}")
st.session_state["sel_filter"] = f

st.subheader(f"{layer} filter #{f} under the controls")
a_sel = st.session_state.pop("sel_au", None)
j0 = int(a_sel) if a_sel is not None else int(judged[f])
j = st.selectbox("AU to judge", list(range(len(au_labels))), index=j0, format_func=lambda i: au_labels[i],
                 key=f"filters_verdict_au_{layer}_{f}",
                 help="default: the AU the analysis judges this filter by (the deepest stage it reaches)")
components.verdict_lines(loaders.verdict(run_dir, stamp, layer, f, j), au_labels[j])
null = ev.get("null") or {}
figs = [("top-K AU share", "share_raw"), ("distinct top-K AU share", "share_distinct"),
        ("excess over the emotions", "excess"), ("correlation with AU", "r_au"),
        ("partial corr. given emotion", "r_partial")]
cols = st.columns(len(figs) + 1)
for col, (label, name) in zip(cols, figs, strict=False):
    with col:
        components.null_badge(float(ev[name][f, j]), float(null[name][j]) if name in null else None, label=label)
with cols[-1]:
    components.null_badge(float(ev["kl"][f]), float(null["kl"]) if "kl" in null else None, label="KL selectivity")
st.caption(f"Figures at AU{int(ev['au_ids'][j])}, each beside the null network's 95th percentile over its "
           "filters (same layer, same AU): green when above it.")

p = loaders.filter_panels(run_dir, stamp, layer, f, distinct)
st.subheader(f"{layer} filter #{f}: top {p['n']} images" + (" (distinct)" if distinct else ""))
st.markdown("**Top patches** (activation values)")
st.image(p["patches"], caption=p["captions"], width=96)
st.markdown("**Source images** with the receptive field box, label and AUs")
st.image(p["sources"], caption=p["source_captions"], width=128)
st.markdown("**Deconvnet projections**")
st.image(p["deconv"], caption=p["captions"], width=96)
ui.png_button("Top-K sources (PNG)", p["sources_png"], f"{layer}_{f}_topk.png", "dl_topk")
st.subheader("AU profile against the base rates")
share = ev["share_distinct"][f] if distinct else ev["share_raw"][f]
which = "distinct top-K" if distinct else "top-K"
fig = figures.bars(share, au_labels, base=ev["base_rate"], value_name=f"share of {which}",
                   title=f"Filter #{f}: how often each AU is present in its {which} images")
st.plotly_chart(fig, key="au_profile")
profile = pd.DataFrame({"AU": [int(a) for a in reader.au_ids], "label": au_labels, f"{which} share": share,
                        "base rate": ev["base_rate"]})
ui.csv_button("AU profile (CSV)", profile.to_csv(index=False, float_format="%.3g"), f"{layer}_{f}_au_profile.csv",
              "dl_profile")
