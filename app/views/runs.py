"""Runs: every run in the cache in one table, and two or three of them side by side — accuracy,
per-class accuracy, the funnel of controls per layer and the same filter × AU map."""

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, figures, loaders, state, ui

st.title("Runs")
ui.show_notes()
runs = loaders.list_runs()
by_dir = {r["run_dir"]: r for r in runs}
RECORDED = {"ok": "✓", "damaged": "damaged: record again", "none": "✗"}

table = pd.DataFrame([{
    "data set": r["dataset"], "source": r["source"] or "–", "model": r["model"], "protocol": r["protocol"],
    "mean test accuracy (%)": None if r["accuracy"] is None else 100 * r["accuracy"],
    "sd (%)": None if r["sd"] is None else 100 * r["sd"],
    "recorded": RECORDED.get(r.get("records", ""), "✓" if r["recorded"] else "✗"),
    "analysed": "✓" if r["analysed"] else "✗", "null network": r["null"] or "none",
    "trained or imported": r["date"] + (" (file time)" if r.get("date_from_files") else ""), "run": r["name"],
} for r in runs])
table = figures.sig3(table)
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"mean test accuracy (%)": st.column_config.NumberColumn(format="%.1f"),
                            "sd (%)": st.column_config.NumberColumn(format="%.1f"),
                            "run": st.column_config.TextColumn(help="the run's directory in the cache")})
st.caption(f"{len(runs)} runs in the cache. *Source*: what the training faces are (phantom: drawn faces; – for a "
           "network trained elsewhere, whose accuracy is its latest `evaluate`). "
           "*Analysed*: the filter × AU analysis is stored; *null network*: the control it was compared with.")
ui.csv_button("Runs (CSV)", partial(figures.csv_text, table), "runs.csv", "dl_runs")
damaged = [r for r in runs if r.get("records") == "damaged"]
if damaged:
    st.warning("Damaged records (the file does not open: truncated, or written by another version); record "
               "each run again: " + "; ".join(f"`python -m fercore record --run {r['name']}` ({r['records_error']})"
                                            for r in damaged))
if any(r.get("date_from_files") for r in runs):
    st.caption("*(file time)*: a run made before fercore stored when it was trained; the date shown is when its "
               "files were last written (a copied run shows the time of the copy).")

st.subheader("Compare runs")
options = list(by_dir)
current = ui.current_run()
default = ([current] if current in by_dir else []) + [d for d in options if d != current]
kept = [d for d in (state.get("compare") or []) if d in by_dir]
st.session_state["runs_compare"] = kept if state.get("compare") is not None else default[:3]


def _compare_changed() -> None:
    state.put("compare", list(st.session_state["runs_compare"]))


picked = st.multiselect("Runs to compare (two or three)", options, key="runs_compare", max_selections=3,
                        format_func=lambda d: by_dir[d]["label"], on_change=_compare_changed,
                        help="the run chosen in the sidebar first, then the newest; kept while you visit other views")
if len(picked) < 2:
    st.info("Choose two or three runs to compare." if len(runs) >= 2 else
            "Only one run is in the cache: train another (`python -m fercore train ...`) to compare.")
    st.stop()

letters = "ABC"
names = {d: f"{letters[i]}: {by_dir[d]['dataset']}" for i, d in enumerate(picked)}
stamps = {d: loaders.records_stamp(d) for d in picked}
cards = {d: loaders.run_card(d, stamps[d]) for d in picked}
st.caption(" · ".join(f"**{names[d]}** = {by_dir[d]['label']} (`{by_dir[d]['name']}`)" for d in picked))

c_acc, c_cls = st.columns([1, 2])
with c_acc:
    acc = figures.sig3(pd.DataFrame([{"run": names[d], "mean test accuracy (%)": 100 * (cards[d]["accuracy"] or np.nan),
                                      "sd (%)": 100 * (cards[d]["sd"] or np.nan)} for d in picked]))
    st.markdown("**Accuracy**")
    st.dataframe(acc, hide_index=True, width="stretch")
    ui.csv_button("Accuracy (CSV)", partial(figures.csv_text, acc), "runs_accuracy.csv", "dl_runs_acc")
with c_cls:
    classes = sorted({c for d in picked for c in cards[d]["per_class"]})
    fig = charts.bars({names[d]: [cards[d]["per_class"].get(c, np.nan) for c in classes] for d in picked}, classes,
                      title="Test accuracy per class (all folds)", horizontal=False, value_title="accuracy",
                      domain=(0.0, 1.0))
    st.vega_lite_chart(fig, key="runs_per_class", width="content")
    per_class = figures.sig3(pd.DataFrame({names[d]: [cards[d]["per_class"].get(c, np.nan) for c in classes]
                                           for d in picked}, index=classes))
    ui.csv_button("Accuracy per class (CSV)", partial(figures.csv_text, per_class, index=True, index_label="class"),
                  "runs_per_class.csv", "dl_runs_cls")

st.markdown("**AU-selective filters per layer: the funnel of controls** (run · null network)")
frames = []
for d in picked:
    c = cards[d]
    if c["funnel"] is None:
        st.caption(f"{names[d]}: not analysed yet; open it in the Overview to rebuild its records.")
        continue
    if c["warnings"]:
        st.caption(f"{names[d]}: counts withheld — " + " ".join(c["warnings"]))
        continue
    frames.append(c["funnel"].assign(run=names[d]))
if frames:
    funnel = pd.concat(frames, ignore_index=True)
    cols = ["run"] + [c for c in funnel.columns if c != "run"]
    st.dataframe(funnel[cols], hide_index=True, width="stretch",
                 column_config={"AUs beyond emotion": st.column_config.TextColumn(width="large")})
    ui.csv_button("Funnels (CSV)", partial(figures.csv_text, funnel[cols]), "runs_funnel.csv", "dl_runs_funnel")

analysed = [d for d in picked if cards[d]["analysed"]]
common = [layer for layer in cards[analysed[0]]["layers"] if all(layer in cards[d]["layers"] for d in analysed)] \
    if analysed else []
if len(analysed) < 2 or not common:
    st.info("The maps need two analysed runs with a layer in common.")
    st.stop()
st.markdown("**The same filter × AU map, side by side** (filters ordered by their evidence in each run)")
c1, c2, c3 = st.columns([2, 3, 1])
layer = state.selectbox(c1, "Layer", common, name="layer", key="runs_layer", default=common[-1])
stat = state.selectbox(c2, "Figure", loaders.statistics(loaders.evidence(analysed[0], stamps[analysed[0]], layer)), name="stat", key="runs_stat",
                       format_func=loaders.STATISTICS.get)
distinct = state.toggle(c3, "Distinct", name="distinct", key="runs_distinct")
st.caption(f"{loaders.stat_label(stat, distinct)}; rows: filters, each with the deepest stage of the funnel it "
           f"reaches ({figures.STAGE_LEGEND})")
map_cols = st.columns(len(analysed))
for col, d in zip(map_cols, analysed, strict=True):
    with col:
        fig, df = loaders.plain_map(d, stamps[d], layer, stat, distinct, names[d])
        st.vega_lite_chart(fig, key=f"runs_map_{letters[picked.index(d)]}", width="content")
        ui.csv_button(f"{names[d][:1]}: map data (CSV)", partial(figures.csv_text, df, index=True, index_label="filter"),
                      f"{by_dir[d]['name']}_{layer}_{stat}.csv", f"dl_runs_map_{letters[picked.index(d)]}")
