"""Shared fixtures: a tiny real run (phantom faces, trained, recorded, analysed), built once per
test session in a temporary cache, and photos for the upload tests."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the dashboard package `app` lives at the repository root
    sys.path.insert(0, str(REPO))

#: The tiny run: 320 phantom faces of 48 px, a zero-bias CNN at 1/8 width, 2 of the folds,
#: 5 epochs (enough to be well above chance, so its analysis is not withheld as a weak run),
#: top-8 per filter. Built in about 20 s on two CPU cores.
TINY_PHANTOM = dict(n=320, size=48, seed=0)
TINY_TRAIN = dict(width=0.125, epochs=5, folds=(0, 1))
TINY_K = 8

@pytest.fixture
def one_thread():
    """Small ops run much faster on one thread when the CPU is shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A cache folder holding one tiny real run; ``FERCORE_CACHE`` points at it for the session."""
    cache = tmp_path_factory.mktemp("fercore-cache")
    old = os.environ.get("FERCORE_CACHE")
    os.environ["FERCORE_CACHE"] = str(cache)
    try:
        from fercore.pipeline import build_run

        build_run(phantom=TINY_PHANTOM, train_options=TINY_TRAIN, k=TINY_K)
        yield cache
    finally:
        if old is None:
            os.environ.pop("FERCORE_CACHE", None)
        else:
            os.environ["FERCORE_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_run(tiny_cache) -> Path:
    """The tiny run's directory."""
    (run,) = [d for d in (tiny_cache / "runs").iterdir() if d.is_dir()]
    return run


@pytest.fixture(scope="session")
def tiny_null(tiny_run) -> Path:
    """The tiny run's untrained null network (``<run>/null/untrained``), recorded and analysed
    (about a second); what ``build_default`` builds as its last stage."""
    from fercore.analysis.nulls import ensure_null

    return ensure_null(tiny_run, kind="untrained")


@pytest.fixture(scope="session")
def face_png() -> bytes:
    """A real photo with one face: scikit-image's astronaut (public domain, NASA), as PNG."""
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return buf.getvalue()
