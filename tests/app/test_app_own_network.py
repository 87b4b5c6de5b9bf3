"""The dashboard on networks trained elsewhere: every view opens an imported run of each of the
three foreign architectures, an upload is analysed with the run's own input spec, and an
imported network without records can be recorded from the page."""

from __future__ import annotations

import foreign_nets
import pytest
from test_app import _keep_cache_env, _upload, app, assert_clean, finish_jobs, texts  # noqa: F401 (the autouse fixture)

VIEWS = ["views/overview.py", "views/filters.py", "views/fau_map.py", "views/evidence.py", "views/sequences.py",
         "views/upload.py", "views/runs.py"]


def _open(cache, run):
    at = app(cache)
    at.run()
    picker = at.sidebar.selectbox(key="run_picker")
    assert any(o.startswith(run.name.rsplit("-", 1)[0] + " (") for o in picker.options), picker.options
    picker.set_value(str(run)).run()
    assert at.sidebar.selectbox(key="run_picker").value == str(run)
    return at


@pytest.mark.parametrize("name", list(foreign_nets.NETS))
def test_every_view_opens_an_imported_run_and_analyses_an_upload(foreign_recorded, name, face_png):
    run = foreign_recorded.runs[name]["torchscript"]
    at = _open(foreign_recorded.cache, run)
    assert_clean(at)
    t = texts(at)
    assert "trained elsewhere" in t and "No folds" in t  # the Overview says what an imported run lacks
    assert "Accuracy on phantom-tiny.h5 (evaluate)" == at.metric[0].label
    for page in VIEWS[1:]:
        at.switch_page(page).run()
        assert_clean(at)
    at.switch_page("views/filters.py").run()
    assert "guided backpropagation" in texts(at)
    at.switch_page("views/overview.py").run()
    at.tabs[1].run()  # Learning curves: none, and said so
    at = _upload(at.switch_page("views/upload.py").run(), "astronaut.png", face_png)
    assert_clean(at)
    assert at.metric[0].label == "Predicted expression"
    t = texts(at)
    assert "Grad-CAM per class" in t and foreign_recorded.runs[name]["torchscript"].name
    layers = foreign_recorded.runs[name]["torchscript"]
    from fercore.store.layout import load_config

    assert load_config(layers)["layers"][0] in t  # its activation maps, by the network's own layer names


def test_an_imported_run_without_records_is_recorded_from_the_page(foreign, tmp_path):
    """Import, then open the dashboard: it offers the cache's FaceSets and records and analyses
    the network on the chosen one on the server."""
    import shutil

    from fercore.training.imported import import_model

    cache = tmp_path / "cache"
    (cache / "datasets").mkdir(parents=True)
    shutil.copy(foreign.data, cache / "datasets" / foreign.data.name)
    run = import_model(**foreign.files["xception"]["onnx"], name="fresh", root=cache / "runs")
    at = _open(cache, run)
    assert not at.exception
    assert "is a network trained elsewhere" in texts(at)
    assert at.selectbox(key="imported_data").value == str(cache / "datasets" / foreign.data.name)
    at.button(key="record_imported").click().run()
    at = finish_jobs(at)
    assert_clean(at)
    assert "permuted" in texts(at)  # the funnel beside its permuted null
    assert (run / "records.h5").exists() and (run / "null" / "permuted" / "records.h5").exists()


def test_the_filters_view_shows_patches_at_once_and_projections_when_made(foreign, tmp_path):
    """Projections are made on demand: the view draws everything else first, with a placeholder,
    computes the filter's projections on the server, and shows them; then they are instant."""
    import shutil

    from fercore.analysis.analyze import analyze
    from fercore.recording.record import record
    from fercore.store.reader import open_run
    from fercore.training.imported import import_model

    cache = tmp_path / "cache"
    (cache / "datasets").mkdir(parents=True)
    data = cache / "datasets" / foreign.data.name
    shutil.copy(foreign.data, data)
    run = import_model(**foreign.files["resnet"]["torchscript"], name="ondemand", root=cache / "runs")
    record(run, data=data, k=8)
    analyze(run, null=None)
    at = _open(cache, run)
    at.switch_page("views/filters.py").run()
    assert_clean(at)
    t = texts(at)
    assert "Computing the projections of filter" in t and "Top patches" in t and "Source images" in t
    images_before = len(at.get("image"))
    at = finish_jobs(at)
    assert_clean(at)
    t = texts(at)
    assert "Computing the projections" not in t and "guided backpropagation" in t
    assert len(at.get("image")) == images_before + 1  # the projections joined the page
    layer, f = at.selectbox(key="filters_layer").value, at.selectbox(key="filters_filter").value
    assert open_run(run).projections(layer, f) is not None
    # the grid by projection: every filter's first one, made on demand too
    at.radio(key="filters_kind").set_value("deconv").run()
    assert "every filter's top image" in texts(at)
    at = finish_jobs(at)
    assert_clean(at)
    assert open_run(run).top1_projections(layer) is not None and "every filter's top image" not in texts(at)
