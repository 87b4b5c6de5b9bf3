"""Filters: every filter of a layer by its top patch, marked by whether it survives the controls;
one filter's verdict under the controls, its figures beside the null network's, top-K (raw or
distinct), sources, deconv, AU profile."""

import pandas as pd
import streamlit as st

from app import figures, loaders, ui
from app.views import honest

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

try:
    summary = loaders.get_summary(run_dir, stamp)
except (ValueError, OSError, KeyError) as e:
    st.error(f"The controls of this run cannot be computed: {e} (the Overview offers to record the "
             "null network again)")
    st.stop()
nstamp = loaders.null_stamp(run_dir) if summary.null else 0.0
sel = summary.selectivity[layer]
ok = loaders.survives(sel)

stats = loaders.au_stats(run_dir, stamp, layer)
order = loaders.filter_order(run_dir, stamp, layer, order_by)
best_au = loaders.best_aus(run_dir, stamp, layer)
grid = loaders.filter_grid(run_dir, stamp, layer, kind)
n = len(order)
st.subheader(f"All {n} filters of {layer}")
st.image([grid[f] for f in order], width=72,
         caption=[f"#{f} AU{int(reader.au_ids[best_au[f]])} KL {stats['kl'][f]:.2f} {'✓' if ok[f] else '✗'}"
                  for f in order])
st.caption(f"✓: AU-selective for at least one AU under every control ({int(ok.sum())} of {n} filters); "
           "✗: fails at least one" + ("" if summary.null else " (the null network is not built: see the Overview)") + ".")
ui.png_button("Filter grid (PNG)", loaders.filter_grid_png(run_dir, stamp, layer, kind, tuple(int(i) for i in order)),
              f"{layer}_filters.png", "dl_grid")
with st.expander("Filters and controls (table)"):
    best_d = loaders.judged_aus(sel, best_au)
    grid_table = pd.DataFrame({
        "filter": [int(f) for f in order],
        "AU judged": [f"AU{int(sel.au_ids[best_d[f]])}" for f in order],
        "distinct share": [float(sel.share_distinct[f, best_d[f]]) for f in order],
        "survives controls": ["✓" if ok[f] else "✗" for f in order],
        "fails": [loaders.first_failed(sel, int(f), int(best_d[f])) or "-" for f in order],
    })
    st.dataframe(grid_table, hide_index=True, width="stretch", key="filters_controls")
    ui.csv_button("Filters and controls (CSV)", grid_table.to_csv(index=False), f"{layer}_controls.csv", "dl_controls")

f_sel = st.session_state.get("sel_filter")
f_sel = int(f_sel) if f_sel is not None and 0 <= int(f_sel) < n else int(order[0])
f = st.selectbox("Filter", [int(i) for i in order], index=[int(i) for i in order].index(f_sel), key="filters_filter",
                 format_func=lambda i: f"#{i} · best AU {au_labels[best_au[i]]} · KL {stats['kl'][i]:.2f}")
st.session_state["sel_filter"] = f

st.subheader(f"{layer} filter #{f} under the controls")
j0 = int(loaders.judged_aus(sel, best_au)[f])
j = st.selectbox("AU to judge", list(range(len(au_labels))), index=j0, format_func=lambda i: au_labels[i],
                 key=f"filters_verdict_au_{layer}_{f}",
                 help="default: an AU passing every control, else the filter's best AU by lift over the base rate")
honest.filter_verdict(sel, f, au_index=j)
figs = [("top-K AU share", sel.share_raw[f, j], "share_raw"), ("distinct top-K AU share", sel.share_distinct[f, j], "share_distinct"),
        ("correlation with AU", sel.confound.r_au[f, j], "r_au"),
        ("partial corr. given emotion", sel.confound.r_partial[f, j], "r_partial")]
cols = st.columns(len(figs) + 1)
for col, (label, value, name) in zip(cols, figs, strict=False):
    with col:
        honest.null_badge(float(value), float(sel.null_p95[name][j]) if sel.has_null else None, label=label)
kl_p95 = loaders.null_p95(run_dir, stamp, nstamp, layer, "kl")
with cols[-1]:
    honest.null_badge(float(stats["kl"][f]), None if kl_p95 is None else float(kl_p95[0]), label="KL selectivity")
st.caption(f"Figures at AU{int(sel.au_ids[j])}, each beside the "
           "null network's 95th percentile over its filters (same layer, same AU): green when above it.")

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
share = sel.share_distinct[f] if distinct else stats["topk_share"][f]
which = "distinct top-K" if distinct else "top-K"
fig = figures.bars(share, au_labels, base=stats["base_rate"], value_name=f"share of {which}",
                   title=f"Filter #{f}: how often each AU is present in its {which} images")
st.plotly_chart(fig, key="au_profile")
rows = f"au,label,{'distinct_' if distinct else ''}topk_share,base_rate\n" + "\n".join(
    f"{int(a)},{lab},{s:.4f},{b:.4f}" for a, lab, s, b in zip(reader.au_ids, au_labels, share, stats["base_rate"], strict=True))
ui.csv_button("AU profile (CSV)", rows, f"{layer}_{f}_au_profile.csv", "dl_profile")
