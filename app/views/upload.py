"""Upload: a face photo through the run's model — face box, aligned crop with its landmarks and an
AU's region, prediction (with what the run's training data can and cannot say about a photo),
activation maps, Grad-CAM per class, the most active filters with their top-K patches and AU
profiles.

The photo stays in this browser session: it is never written to disk, logged, or put in a cache
that other sessions share (:func:`app.loaders.decode_and_crop`)."""

from functools import partial

import streamlit as st

from app import charts, figures, loaders, ui
from fercore.data.preprocess import ImageDecodeError, NoFaceError

st.title("Upload a face")
ctx = ui.require_run()
if ctx is None:
    st.stop()
run_dir, stamp, reader = ctx

loaders.preload_face_models()  # while the user chooses a photo
c_file, c_cam = st.columns([1, 1])
with c_file:
    up = st.file_uploader("A face photo (PNG, JPEG, BMP, TIFF, WebP)", key="upload_file",
                          help="One face, roughly frontal. Grey or colour; EXIF rotation is applied. The photo is "
                               "kept in memory for this browser session only, never written to disk.")
with c_cam:
    use_cam = st.toggle("Use the camera", key="upload_use_cam")
    cam = st.camera_input("Take a photo", key="upload_cam") if use_cam else None
source = cam if cam is not None else up
if source is None:
    loaders.forget_upload()
    st.info("Upload a photo or take one with the camera. The run's own face preprocessing "
            "(detection, alignment, crop) is applied before the network sees it. The photo stays in this "
            "browser session's memory: nothing is written to disk or shared with other sessions.")
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
c1, c2, c3 = st.columns([3, 2, 3])  # the crop's 192 px fit the middle column at a 1400 px window
with c1:
    if crop["box"]:
        shown = figures.draw_box(grey, crop["box"], thickness=max(2, grey.shape[1] // 200))
        how = "detected face box (orange)"
        if crop.get("photo_landmarks") is not None:
            shown = figures.draw_landmarks(shown, crop["photo_landmarks"])
            how += " and its 68 fitted landmarks"
    else:
        shown = figures.to_rgb(grey)
        how = "no face detected: the largest centred square (centre crop) is analysed"
    st.image(shown, caption=f"{name}: {grey.shape[1]}×{grey.shape[0]} px, {how}", width="stretch")
with c2:
    crop_how = ("centre crop" if crop["centre_crop"] else
                "aligned to the run's eye and mouth positions" if crop.get("canonical") else "face box crop")
    st.image(figures.resize(face, 192), caption=f"{crop_how}, {face.shape[0]}×{face.shape[1]} px (network input)",
             width=192, output_format="PNG")
    ui.png_button("Aligned crop (PNG)", partial(figures.png_bytes, face), "face.png", "dl_face")

a = loaders.analyze_face(run_dir, stamp, face)
with c3:
    pred = a["class_names"][a["pred"]]
    st.metric("Predicted expression", pred)
    st.caption(f"probability {a['probs'][a['pred']]:.2f}")
    source_kind = str(reader.config.get("faceset", {}).get("source") or "")
    if source_kind in loaders.DRAWN_SOURCES:
        st.warning("**This network has seen only drawn faces** (phantom faces, "
                   f"data set {reader.config.get('faceset', {}).get('name', '?')}); its reading of a photograph "
                   "means little. Use a run trained on photographs to read a real face.")
        real = [r for r in loaders.list_runs() if not r["drawn"] and r["run_dir"] != run_dir]
        if real:
            for r in real[:3]:
                if st.button(f"Switch to {r['label']}", key=f"switch_run_{r['name']}",
                             help=f"run `{r['name']}`, trained on {r['dataset']} ({r['source']})"):
                    st.session_state[ui.RUN_KEY] = r["run_dir"]
                    st.rerun()
        else:
            st.caption("No run in the cache is trained on photographs yet: import a data set "
                       "(`python -m fercore import ...`) and train on it (`python -m fercore train ...`).")
    st.vega_lite_chart(charts.class_probabilities(a["probs"], a["class_names"]), key="probs", width="stretch")
    ui.csv_button("Probabilities (CSV)", "class,probability\n" + "\n".join(
        f"{c},{p:.3g}" for c, p in zip(a["class_names"], a["probs"], strict=True)), "probabilities.csv", "dl_probs")

st.subheader("Landmarks and AU regions on the crop")
au_ids = [int(x) for x in reader.au_ids]
au_labels = loaders.au_labels(run_dir, stamp)
lm = crop["landmarks"]
c_lm, c_lm_text = st.columns([1, 2])
with c_lm_text:
    au = st.selectbox("AU region to draw", au_ids, index=0, key="upload_region_au",
                      format_func=lambda x: au_labels[au_ids.index(x)],
                      help="the face region FACS places the AU in (fercore.data.facs), drawn from the 68 landmarks")
    if lm is None:
        why = "" if crop["fit"] in ("", "none") else f" ({crop['fit']})"
        st.caption(f"No landmarks were fitted for this photo{why}, so no points or AU region are drawn: the run's "
                   "recorded preprocessing finds the face box only.")
    else:
        st.caption(f"The 68 landmarks (orange dots) fitted on this face, and the region of {au_labels[au_ids.index(au)]} "
                   "(green) where the analysis counts a filter's maxima as inside the AU.")
with c_lm:
    img = loaders.landmark_figure(face, lm, au if lm is not None else None)
    st.image(img, caption="crop with landmarks and AU region" if lm is not None else "crop (no landmarks fitted)",
             width=192, output_format="PNG")

st.subheader("Grad-CAM per class, weighted by the class probability")
st.image(a["gradcam_png"], caption=[f"{c} (p = {p:.2f})" for c, p in zip(a["class_names"], a["probs"], strict=True)],
         width=128, output_format="PNG")
st.image(a["gradcam_bar"], width=258, output_format="PNG")
st.caption("Each class's Grad-CAM (last conv layer, normalised to 0–1) times its probability: colour and opacity "
           "grow with the product, so a class the network gives p ≈ 0 leaves the face grey.")
ui.png_button("Grad-CAM (PNG)", a["gradcam_tile"], "gradcam.png", "dl_cam")

st.subheader("Activation maps on the face")
st.caption("Per layer, the most active filters' maps (conv output before ReLU) over the aligned face, all on the "
           "layer's one colour scale shown beside them.")
for layer, pngs in a["maps_png"].items():
    top = a["top_filters"].get(layer, [])[:8]
    f_count, h, w = a["map_shapes"][layer]
    st.markdown(f"**{layer}** — {f_count} filters, maps {h}×{w}")
    st.image(pngs, caption=[f"#{f}: max {v:.3g}" for f, v in top], width=128, output_format="PNG")
    st.image(a["maps_bar"][layer], width=258, output_format="PNG")

st.subheader("Most active filters: what they respond to in the data set")
layer = st.selectbox("Layer", list(a["top_filters"]), index=len(a["top_filters"]) - 1, key="upload_layer")
ev = loaders.evidence(run_dir, stamp, layer)
rows = {r["filter"]: r for r in a["filter_aus"].get(layer, [])}
for f, v in a["top_filters"][layer][:4]:
    t = loaders.topk(run_dir, stamp, layer, f, False)
    cols = st.columns([3, 2])
    with cols[0]:
        st.markdown(f"**#{f}** activation {v:.3g} on this face; its top-K patches in the data set:")
        st.image([figures.resize(p, 72) for p in t["patch"]], caption=[f"{x:.3g}" for x in t["activation"]], width=72,
                 output_format="PNG")
    with cols[1]:
        r = rows.get(f)
        if r is not None:
            st.markdown(f"Judged by **{r['au_name']}**: reaches *{figures.STAGE_NAMES[r['stage']]}*; distinct "
                        f"top-K share {r['share_distinct']:.2f} (base rate "
                        f"{float(ev['base_rate'][list(ev['au_ids']).index(r['au'])]):.2f}), excess over the "
                        f"emotions {r['excess']:.2f}.")
