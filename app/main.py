"""fercore dashboard: router and frame (``streamlit run app/main.py``).

The frame picks the run every view shows (sidebar, kept in ``st.session_state`` and the ``run``
query parameter), builds the embedded default run when the cache holds none, and routes to the
views under ``app/views/`` with stable URL paths.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on sys.path
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from app import loaders, ui  # noqa: E402

st.set_page_config(page_title="fercore — what did my FER network learn?", page_icon="🙂", layout="wide")

_VIEWS = Path(__file__).resolve().parent / "views"
PAGES = [
    st.Page(_VIEWS / "overview.py", title="Overview", icon=":material/dashboard:", url_path="overview"),
    st.Page(_VIEWS / "filters.py", title="Filters", icon=":material/grid_view:", url_path="filters"),
    st.Page(_VIEWS / "fau_map.py", title="FAU map", icon=":material/grid_on:", url_path="fau-map"),
    st.Page(_VIEWS / "upload.py", title="Upload", icon=":material/add_a_photo:", url_path="upload"),
]


def _home() -> None:
    """The root address opens the overview at its own stable address."""
    st.switch_page(PAGES[0])


page = st.navigation([st.Page(_home, title="fercore", url_path="home", default=True, visibility="hidden"), *PAGES])


def _build_default_here() -> None:
    st.title("fercore")
    st.write(
        "No run exists in the cache yet. Building the embedded default: phantom faces with known "
        "action units, a zero-bias CNN trained on them, its filters recorded and related to AUs, and "
        "an untrained network of the same architecture as the control every figure is compared with. "
        "This takes a few minutes once; afterwards the dashboard opens from the cache."
    )
    with ui.guarded("Building the default run"):
        run_dir = loaders.build_default(ui.progress_bar("Building the default run"))
        st.session_state[ui.RUN_KEY] = run_dir
        st.rerun()


def _pick_run(runs: list[dict]) -> None:
    by_dir = {r["run_dir"]: r for r in runs}
    wanted = st.query_params.get("run")
    current = st.session_state.get(ui.RUN_KEY)
    if current not in by_dir:
        match = [r["run_dir"] for r in runs if wanted and r["name"] == wanted]
        current = match[0] if match else runs[0]["run_dir"]
    options = list(by_dir)
    chosen = st.sidebar.selectbox("Run", options, index=options.index(current), key="run_picker",
                                  format_func=lambda d: by_dir[d]["name"],
                                  help="Every run in the cache; all views show the run chosen here.")
    st.session_state[ui.RUN_KEY] = chosen
    st.query_params["run"] = by_dir[chosen]["name"]
    info = by_dir[chosen]
    st.sidebar.caption(f"**Data set** {info['dataset']}  \n**Model** {info['model']}")


runs = loaders.list_runs()
if not runs:
    _build_default_here()
    st.stop()
_pick_run(runs)
with ui.guarded(f"The {page.title} view"):
    page.run()
