"""Upload: a face photo through the run's model — face box, aligned crop, prediction, activation
maps, the most active filters with their top-K patches and AU profiles, Grad-CAM per class."""

import streamlit as st

from app import figures, loaders, ui
from fercore.data.preprocess import ImageDecodeError, NoFaceError

st.title("Upload a face")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx

c_file, c_cam = st.columns([1, 1])
with c_file:
    up = st.file_uploader("A face photo (PNG, JPEG, BMP, TIFF, WebP)", key="upload_file",
                          help="One face, roughly frontal. Grey or colour; EXIF rotation is applied.")
with c_cam:
    use_cam = st.toggle("Use the camera", key="upload_use_cam")
    cam = st.camera_input("Take a photo", key="upload_cam") if use_cam else None
source = cam if cam is not None else up
if source is None:
    st.info("Upload a photo or take one with the camera. The run's own face preprocessing "
            "(detection, alignment, crop) is applied before the network sees it.")
    st.stop()

data = source.getvalue()
name = getattr(source, "name", "camera photo")

centre = bool(st.session_state.get("upload_centre_crop", False))
try:
    crop = loaders.decode_and_crop(data, run_dir, stamp, centre)
except ImageDecodeError as e:
    st.error(f"Cannot use {name}: {e}")
    st.stop()
except NoFaceError:
    st.warning(f"No face found in {name}. Upload a photo with a clear, roughly frontal face, "
               "or analyse the centre of the photo instead.")
    if st.button("Use a centre crop", key="centre_crop_btn"):
        st.session_state["upload_centre_crop"] = True
        st.rerun()
    st.stop()

if crop["centre_crop"]:
    st.warning(f"No face found in {name}; the centre of the photo is analysed (centre crop).")
elif crop["n_faces"] > 1:
    st.info(f"{crop['n_faces']} faces found in {name}; the largest one is analysed.")
if centre and st.button("Detect the face again (no centre crop)", key="centre_crop_off"):
    st.session_state["upload_centre_crop"] = False
    st.rerun()
for msg in crop["messages"]:
    if "faces found" not in msg and "centre crop" not in msg:
        st.caption(msg)

face = crop["image"]
grey = crop["grey"]
c1, c2, c3 = st.columns([2, 1, 2])
with c1:
    shown = figures.draw_box(grey, crop["box"], thickness=max(2, grey.shape[1] // 200)) if crop["box"] else figures.to_rgb(grey)
    st.image(shown, caption=f"{name}: {grey.shape[1]}×{grey.shape[0]} px, detected face box", width="stretch")
with c2:
    st.image(figures.resize(face, 192), caption=f"aligned crop {face.shape[0]}×{face.shape[1]} px", width=192)
    ui.png_button("Aligned crop (PNG)", figures.png_bytes(face), "face.png", "dl_face")

a = loaders.analyze_face(run_dir, stamp, loaders.array_key(face), face)
with c3:
    pred = a["class_names"][a["pred"]]
    st.metric("Predicted expression", pred)
    st.caption(f"probability {a['probs'][a['pred']]:.2f}")
    st.plotly_chart(figures.bars(a["probs"], a["class_names"], title="Class probabilities",
                                 value_name="probability"), key="probs")
    ui.csv_button("Probabilities (CSV)", "class,probability\n" + "\n".join(
        f"{c},{p:.5f}" for c, p in zip(a["class_names"], a["probs"], strict=True)), "probabilities.csv", "dl_probs")

st.subheader("Grad-CAM per class")
st.image(a["gradcam_png"], caption=[f"{c} ({p:.2f})" for c, p in zip(a["class_names"], a["probs"], strict=True)],
         width=128)
ui.png_button("Grad-CAM (PNG)", a["gradcam_tile"], "gradcam.png", "dl_cam")

st.subheader("Activation maps on the face")
st.caption("Per layer, the most active filters' maps (colour) over the aligned face.")
au_labels = loaders.au_labels(run_dir, stamp)
for layer, pngs in a["maps_png"].items():
    top = a["top_filters"].get(layer, [])[:8]
    f_count, h, w = a["map_shapes"][layer]
    st.markdown(f"**{layer}** — {f_count} filters, maps {h}×{w}")
    st.image(pngs, caption=[f"#{f}: {v:.2f}" for f, v in top], width=128)

st.subheader("Most active filters: what they respond to in the data set")
layer = st.selectbox("Layer", list(a["top_filters"]), index=len(a["top_filters"]) - 1, key="upload_layer")
ev = loaders.evidence(run_dir, stamp, layer)
rows = {r["filter"]: r for r in a["filter_aus"].get(layer, [])}
for f, v in a["top_filters"][layer][:4]:
    t = loaders.topk(run_dir, stamp, layer, f, False)
    cols = st.columns([3, 2])
    with cols[0]:
        st.markdown(f"**#{f}** activation {v:.3g} on this face; its top-K patches in the data set:")
        st.image([figures.resize(p, 72) for p in t["patch"]], caption=[f"{x:.3g}" for x in t["activation"]], width=72)
    with cols[1]:
        r = rows.get(f)
        if r is not None:
            st.markdown(f"Judged by **{r['au_name']}**: reaches *{figures.STAGE_NAMES[r['stage']]}*; distinct "
                        f"top-K share {r['share_distinct']:.2f} (base rate "
                        f"{float(ev['base_rate'][list(ev['au_ids']).index(r['au'])]):.2f}), excess over the "
                        f"emotions {r['excess']:.2f}.")
