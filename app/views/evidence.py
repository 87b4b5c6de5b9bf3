"""Evidence: every filter × AU pair of the chosen layers whose distinct top-K share is above the
AU's base rate, ranked by the deepest stage of the funnel it reaches, with the figures behind each
stage; and the data set's AU × AU co-occurrence, which says which AUs cannot be told apart by the
data alone (the same table as ``python -m fercore analyze --csv FILE``)."""

from functools import partial

import streamlit as st

from app import components, figures, loaders, state, ui

st.title("Evidence")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
st.caption(f"{loaders.run_label(run_dir)} · run `{reader.name}`")

layers = list(reader.layers)
layer = state.selectbox(st, "Layer", layers, name="layer", key="evidence_layer", default=layers[-1])
summary = loaders.summary(run_dir, stamp)
if not summary.get("warnings") and components.power_frame(summary, layer) is not None:
    st.subheader(f"What the beyond-emotion test could find in {layer}")
    st.dataframe(components.power_frame(summary, layer), hide_index=True, width="stretch", key="evidence_power")
    st.caption(components.power_caption(summary, layer))
st.subheader(f"Ranked filter × AU evidence, {layer}")
table = loaders.evidence_table(run_dir, stamp, (layer,))
st.dataframe(table, hide_index=True, width="stretch", height=420,
             column_config={c: st.column_config.NumberColumn(format="%.3g") for c in table.columns
                            if table[c].dtype.kind == "f"})
st.caption(f"{len(table)} pairs whose distinct top-K share is above the AU's base rate, ranked by the deepest stage "
           "of the funnel they reach, then the within-emotion test's q, then the excess share; each within-emotion AUC "
           "with its 95 % interval beside the AUC the test detects on this data. Pick a pair in the "
           "FAU map or the Filters view to see its images.")
c1, c2 = st.columns([1, 1])
with c1:
    ui.csv_button(f"Evidence table, {layer} (CSV)", partial(loaders.evidence_csv, run_dir, stamp, (layer,)),
                  f"{layer}_evidence.csv", "dl_matches")
with c2:
    ui.csv_button("Evidence table, every layer (CSV)", partial(loaders.evidence_csv, run_dir, stamp, tuple(layers)),
                  "evidence.csv", "dl_matches_all")

st.subheader("AU × AU co-occurrence in the data set")
fig, cooc = loaders.cooc_heatmap(run_dir, stamp)
st.vega_lite_chart(fig, key="au_cooc", width="content")
st.caption("P(column AU present | row AU present) over the run's images: AUs that always come together cannot be "
           "told apart by any filter of a network trained on these data.")
ui.csv_button("AU co-occurrence (CSV)", partial(figures.csv_text, cooc, index=True, index_label="AU"),
              "au_cooccurrence.csv", "dl_cooc")
