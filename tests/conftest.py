"""Shared fixtures. In CI (CI=true) nothing may be skipped: a missing dataset or Chromium fails."""
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests that talk to a hub start their own on 127.0.0.1

from tests.hub_fixture import local_hub  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str) -> None:
    """Skip on a developer machine that lacks `what`; fail loudly in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide {what}")
    pytest.skip(f"needs {what}")


def dataset_path() -> Path | None:
    for p in (os.environ.get("CHNMNIST_DATA"), ROOT.parent / "shared" / "data" / "chinese-mnist.zip"):
        if p and Path(p).exists():
            return Path(p)
    return None


@pytest.fixture(scope="session")
def data_zip() -> Path:
    p = dataset_path()
    need(p is not None, "the Chinese MNIST zip (set CHNMNIST_DATA or put it at ../shared/data/chinese-mnist.zip)")
    return p


@pytest.fixture(scope="session")
def dataset(data_zip):
    import chnmnist_hub as ch

    return ch.load_dataset(data_zip)


@pytest.fixture(scope="session")
def chromium() -> str:
    import shutil

    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    need(path is not None, "Chromium (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return ROOT / "models"


def draw_character(strokes, size=256, width=10, ink=0, paper=255) -> np.ndarray:
    """A synthetic drawing: strokes as lists of (x, y) in 0..1, drawn as a sketchpad would."""
    from PIL import Image, ImageDraw

    im = Image.new("L", (size, size), paper)
    d = ImageDraw.Draw(im)
    for stroke in strokes:
        pts = [(x * size, y * size) for x, y in stroke]
        d.line(pts, fill=ink, width=width, joint="curve")
    return np.asarray(im)


# Rough stroke skeletons of a few characters, enough to make test drawings that are not blank.
STROKES = {
    1: [[(0.15, 0.5), (0.85, 0.5)]],
    2: [[(0.25, 0.35), (0.75, 0.35)], [(0.15, 0.7), (0.85, 0.7)]],
    3: [[(0.25, 0.25), (0.75, 0.25)], [(0.3, 0.5), (0.7, 0.5)], [(0.15, 0.78), (0.85, 0.78)]],
    10: [[(0.15, 0.45), (0.85, 0.45)], [(0.5, 0.12), (0.5, 0.9)]],
}
