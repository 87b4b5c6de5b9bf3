"""Filters: every filter of a layer by its top patch; one filter's top-K, sources, deconv, AU profile."""

import streamlit as st

from app import figures, loaders, ui

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
order_by = c2.radio("Sort filters by", ["selectivity", "AU", "index"], horizontal=True, key="filters_sort",
                    help="selectivity: KL divergence of the filter's top-K AU profile from the data's base rates; "
                         "AU: grouped by best-matching AU")
kind = c3.radio("Show each filter by", ["patch", "deconv"], horizontal=True, key="filters_kind",
                help="its top image patch, or the deconvnet projection of its top activation")
distinct = c4.toggle("Distinct", key="filters_distinct",
                     help="one image per sequence (or subject) in the top-K, instead of the raw top-K")

stats = loaders.au_stats(run_dir, stamp, layer)
order = loaders.filter_order(run_dir, stamp, layer, order_by)
best_au = loaders.best_aus(run_dir, stamp, layer)
grid = loaders.filter_grid(run_dir, stamp, layer, kind)
n = len(order)
st.subheader(f"All {n} filters of {layer}")
st.image([grid[f] for f in order], width=72,
         caption=[f"#{f} AU{int(reader.au_ids[best_au[f]])} KL {stats['kl'][f]:.2f}" for f in order])
ui.png_button("Filter grid (PNG)", loaders.filter_grid_png(run_dir, stamp, layer, kind, tuple(int(i) for i in order)),
              f"{layer}_filters.png", "dl_grid")

f_sel = st.session_state.get("sel_filter")
f_sel = int(f_sel) if f_sel is not None and 0 <= int(f_sel) < n else int(order[0])
f = st.selectbox("Filter", [int(i) for i in order], index=[int(i) for i in order].index(f_sel), key="filters_filter",
                 format_func=lambda i: f"#{i} · best AU {au_labels[best_au[i]]} · KL {stats['kl'][i]:.2f}")
st.session_state["sel_filter"] = f

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
share = stats["topk_share"][f]
fig = figures.bars(share, au_labels, base=stats["base_rate"], value_name="share of top-K",
                   title=f"Filter #{f}: how often each AU is present in its top-K images")
st.plotly_chart(fig, key="au_profile")
rows = "au,label,topk_share,base_rate\n" + "\n".join(
    f"{int(a)},{lab},{s:.4f},{b:.4f}" for a, lab, s, b in zip(reader.au_ids, au_labels, share, stats["base_rate"], strict=True))
ui.csv_button("AU profile (CSV)", rows, f"{layer}_{f}_au_profile.csv", "dl_profile")
