"""Overview: the run's data set, model layers, accuracy per fold, the funnel of controls (raw /
distinct top-K / beyond emotion / in the AU's region, beside the null network), confusion matrix,
learning curves."""

import numpy as np
import streamlit as st

from app import figures, loaders, ui

st.title("Overview")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx
st.caption(f"Run `{reader.name}` · {reader.run_dir}")

m = loaders.metrics_view(run_dir, stamp)
col_acc, col_layers = st.columns([1, 1])
with col_acc:
    st.subheader("Accuracy")
    if m["mean"] is not None:
        sd = f" ± {100 * m['sd']:.1f}" if m["sd"] is not None else ""
        st.metric("Mean test accuracy ± sd over folds", f"{100 * m['mean']:.1f}{sd} %")
    st.markdown(f"**Protocol:** {m['protocol']}")
    if m["protocol_items"]:
        with st.expander("Protocol details"):
            st.json(m["protocol_items"])
    if len(m["folds"]):
        st.dataframe(m["folds"], hide_index=True, width="stretch")
        ui.csv_button("Accuracy per fold (CSV)", m["folds"].to_csv(index=False), "accuracy_per_fold.csv", "dl_folds")
    else:
        st.info("metrics.json holds no per-fold accuracy.")
with col_layers:
    st.subheader("Model layers")
    layers = loaders.layer_table(run_dir, stamp)
    st.dataframe(layers, hide_index=True, width="stretch")
    ui.csv_button("Layers (CSV)", layers.to_csv(index=False), "layers.csv", "dl_layers")

st.subheader("AU-selective filters: the funnel of controls")
ui.honest_summary(run_dir, stamp, key="overview")

col_conf, col_curves = st.columns([1, 1])
with col_conf:
    if m["confusion"] is not None:
        st.plotly_chart(figures.confusion_figure(m["confusion"], list(reader.class_names)), key="confusion")
        conf = m["confusion"]
        csv = "true\\predicted," + ",".join(reader.class_names) + "\n" + "\n".join(
            name + "," + ",".join(str(int(v)) for v in row) for name, row in zip(reader.class_names, conf, strict=False))
        ui.csv_button("Confusion matrix (CSV)", csv, "confusion.csv", "dl_conf")
    else:
        st.info("metrics.json holds no confusion matrix.")
with col_curves:
    if m["curves"] is not None:
        st.plotly_chart(figures.curves_figure(m["curves"]), key="curves")
        ui.csv_button("Learning curves (CSV)", m["curves"].to_csv(index=False), "learning_curves.csv", "dl_curves")
    else:
        st.info("metrics.json holds no learning curves.")

st.subheader("Data set")
img, counts = loaders.montage(run_dir, stamp)
col_img, col_counts = st.columns([3, 1])
with col_img:
    st.image(img, caption="One row per class: " + ", ".join(counts["class"]), clamp=True)
    ui.png_button("Montage (PNG)", figures.png_bytes(img), "montage.png", "dl_montage")
with col_counts:
    st.dataframe(counts, hide_index=True, width="stretch")
    st.caption(f"{int(np.sum(counts['images']))} images in all")
    ui.csv_button("Counts (CSV)", counts.to_csv(index=False), "class_counts.csv", "dl_counts")
