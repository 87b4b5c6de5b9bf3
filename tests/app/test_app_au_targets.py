"""A run taught the AUs says so at the top of every view; the emotion-only default does not
(AppTest over a tiny multi-task run trained for this module and the session's tiny run)."""

from __future__ import annotations

import os
import shutil

import pytest
from test_app import app, assert_clean

VIEWS = ["views/overview.py", "views/filters.py", "views/fau_map.py", "views/evidence.py", "views/sequences.py",
         "views/upload.py"]


@pytest.fixture(scope="module")
def multitask_cache(tiny_cache, tmp_path_factory):
    """A cache holding one tiny run of the ``phantom-multitask`` preset (emotion + AU head) on the
    tiny phantom, recorded and analysed."""
    from conftest import TINY_K, TINY_PHANTOM

    from fercore.pipeline import build_run

    cache = tmp_path_factory.mktemp("multitask-cache")
    shutil.copytree(tiny_cache / "datasets", cache / "datasets")
    old = os.environ["FERCORE_CACHE"]
    os.environ["FERCORE_CACHE"] = str(cache)
    try:
        build_run(phantom=TINY_PHANTOM, preset="phantom-multitask", k=TINY_K, null=None,
                  train_options=dict(width=0.125, epochs=2, folds=(0,)))
    finally:
        os.environ["FERCORE_CACHE"] = old
    return cache


def _notes(at) -> str:
    return "\n".join(str(w.value) for w in at.warning)


@pytest.mark.parametrize("view", VIEWS)
def test_a_run_taught_the_aus_is_labelled_on_every_view(multitask_cache, view):
    at = app(multitask_cache)
    at.run()
    if view != "views/overview.py":
        at.switch_page(view).run()
    assert_clean(at)
    assert "Trained with AU targets" in _notes(at) and "AU head on" in _notes(at)


def test_the_emotion_only_default_is_not(tiny_cache, tiny_run):
    from fercore.store.reader import open_run

    assert open_run(tiny_run).au_targets is None  # the default preset learns the emotions only
    at = app(tiny_cache)
    at.run()
    for view in VIEWS[1:3]:
        at.switch_page(view).run()
        assert "Trained with AU targets" not in _notes(at)
