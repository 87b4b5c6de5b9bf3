"""Overview: the run's data set, model layers, accuracy per fold, the funnel of controls (raw /
distinct top-K / beyond emotion / in the AU's region, beside the null network), and in tabs the
confusion matrix, the learning curves and the data set."""

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, loaders, state, ui

st.title("Overview")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
st.caption(f"{loaders.run_label(run_dir)} · run `{reader.name}`")

m = loaders.metrics_view(run_dir, stamp)
col_acc, col_layers = st.columns([1, 1])
with col_acc:
    st.subheader("Accuracy")
    if m["imported"]:
        st.caption(f"A network trained elsewhere: {loaders.imported_text(reader.config)}.")
    if m["mean"] is not None:
        sd = f" ± {100 * m['sd']:.1f}" if m["sd"] is not None else ""
        label = f"Accuracy on {m['evaluated_on']} (evaluate)" if m["imported"] else "Mean test accuracy ± sd over folds"
        st.metric(label, f"{100 * m['mean']:.1f}{sd} %")
    st.markdown(f"**Protocol:** {m['protocol']}")
    if m["protocol_items"]:
        with st.expander("Protocol details"):
            items = pd.DataFrame({"what": [k.replace("_", " ") for k in m["protocol_items"]],
                                  "value": [", ".join(map(str, v)) if isinstance(v, list) else str(v)
                                            for v in m["protocol_items"].values()]})
            st.table(items, hide_index=True, border="horizontal")
    if len(m["folds"]):
        folds = figures.sig3(m["folds"])
        st.markdown("**Test accuracy per fold:** " + " · ".join(f"{v:.3g}" for v in folds["test accuracy"]))
        with st.expander("Per fold: test and validation accuracy, best epoch, test images"):
            st.table(figures.sig3_style(folds), hide_index=True, border="horizontal")
            ui.csv_button("Accuracy per fold (CSV)", partial(figures.csv_text, folds), "accuracy_per_fold.csv",
                          "dl_folds")
    elif m["imported"]:
        st.info("No folds: fercore did not train this network, so it has no per-fold accuracy. "
                f"`python -m fercore evaluate --run {reader.name} --data FACES.h5` scores it on a FaceSet.")
    else:
        st.info("metrics.json holds no per-fold accuracy.")
with col_layers:
    st.subheader("Model layers")
    layers = loaders.layer_table(run_dir, stamp)
    st.table(layers, hide_index=True, border="horizontal")
    ui.csv_button("Layers (CSV)", partial(figures.csv_text, layers), "layers.csv", "dl_layers")

st.subheader("AU-selective filters: the funnel of controls")
ui.honest_summary(run_dir, stamp, key="overview")

# One tab is drawn at a time: the others cost nothing until clicked (Vega-Lite compiles each
# chart in the browser; the learning curves alone added ~65 ms to every visit of this view).
tabs = state.tabs(st, ui.OVERVIEW_TABS, name="tab", key="overview_tab")
if tabs["confusion"].open:
    with tabs["confusion"]:
        if m["confusion"] is not None:
            st.vega_lite_chart(loaders.confusion_figure(run_dir, stamp), key="confusion", width="content")
            conf = m["confusion"]
            if m["imported"]:
                st.caption(f"On {m['evaluated_on']} (its classes; rows true, columns predicted), the latest evaluate.")
            table = pd.DataFrame(conf.astype(int), index=m["confusion_classes"], columns=m["confusion_classes"])
            ui.csv_button("Confusion matrix (CSV)", partial(table.to_csv, index_label="true class \\ predicted class"),
                          "confusion.csv", "dl_conf")
        elif m["imported"]:
            st.info("Not evaluated yet: `python -m fercore evaluate --run " + reader.name + " --data FACES.h5` "
                    "writes the confusion matrix shown here.")
        else:
            st.info("metrics.json holds no confusion matrix.")
if tabs["curves"].open:
    with tabs["curves"]:
        if m["curves"] is not None:
            per_fold = state.toggle(st, "Show each fold's curve", name="per_fold", key="overview_per_fold",
                                    help="the mean over folds with a band of ± one standard deviation; on: every "
                                         "fold too")
            st.vega_lite_chart(loaders.curves_figure(run_dir, stamp, per_fold), key="curves", width="content")
            ui.csv_button("Learning curves (CSV)", partial(figures.csv_text, m["curves"]), "learning_curves.csv",
                          "dl_curves")
        elif m["imported"]:
            st.info("No training curves: this network was trained elsewhere, not by fercore.")
        else:
            st.info("metrics.json holds no learning curves.")
if tabs["data"].open:
    with tabs["data"]:
        img, counts = loaders.montage(run_dir, stamp)
        col_img, col_counts = st.columns([3, 1])
        with col_img:
            st.image(img, caption="One row per class: " + ", ".join(counts["class"]), clamp=True, output_format="PNG")
            ui.png_button("Montage (PNG)", partial(figures.png_bytes, img), "montage.png", "dl_montage")
        with col_counts:
            st.table(counts, hide_index=True, border="horizontal")
            st.caption(f"{int(np.sum(counts['images']))} images in all")
            ui.csv_button("Counts (CSV)", partial(figures.csv_text, counts), "class_counts.csv", "dl_counts")
