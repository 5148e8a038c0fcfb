"""demo/app.py without a browser: its functions take and return plain values."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import STROKES, draw_character
from tests.demo_fixture import APP, ROOT, app_env, demo_models, load_app  # noqa: F401

ITEM_KEYS = {"index", "character", "value", "probability"}
LABEL_RE = re.compile(r"^(\S) \(([\d,]+)\)$")


@pytest.fixture(scope="module")
def app(demo_models):
    module = load_app()
    cnn, resnet = module.load_models(*demo_models)
    module.build_app(cnn, resnet)
    return module


@pytest.fixture(scope="module")
def ten() -> np.ndarray:
    return draw_character(STROKES[10])


def sketch(strokes) -> dict:
    """What gr.Sketchpad hands over: black strokes on a transparent RGBA layer."""
    grey = draw_character(strokes, size=400)
    rgba = np.zeros((400, 400, 4), np.uint8)
    rgba[..., 3] = 255 - grey
    return {"background": None, "layers": [rgba], "composite": rgba}


def check_answer(result: dict) -> None:
    assert set(result) == {"cnn", "resnet18"}
    for answer in result.values():
        assert set(answer) == {"top", "ms"} and answer["ms"] > 0
        top = answer["top"]
        assert len(top) == 5 and all(set(t) == ITEM_KEYS for t in top)
        probs = [t["probability"] for t in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def check_shown(shown: tuple) -> None:
    status, cnn_label, cnn_ms, resnet_label, resnet_ms, preview = shown
    assert "Both models read" in status or "disagree" in status
    for label, ms in ((cnn_label, cnn_ms), (resnet_label, resnet_ms)):
        assert len(label) == 5 and all(LABEL_RE.match(k) for k in label)
        assert re.fullmatch(r"⏱ \d+\.\d ms", ms)
    assert preview.shape == (192, 192) and preview.dtype == np.uint8 and preview.max() > 0


def check_nothing_shown(shown: tuple, status_part: str) -> None:
    status, cnn_label, cnn_ms, resnet_label, resnet_ms, preview = shown
    assert status_part in status
    assert cnn_label is None and resnet_label is None and preview is None and cnn_ms == resnet_ms == ""


def test_import_and_build(app):
    import gradio as gr

    assert callable(app.predict_both) and callable(app.build_app)
    assert isinstance(app.build_app(app.MODELS["cnn"], app.MODELS["resnet18"]), gr.Blocks)


def test_good_drawing_gets_both_models_answers(app, ten):
    result = app.predict_both(ten)
    check_answer(result)
    for key, model in app.MODELS.items():  # the same answer as the package's own predict
        assert [t["index"] for t in result[key]["top"]] == [t["index"] for t in model.predict([ten], top_k=5)[0]]
    check_shown(app.show(ten))
    check_shown(app.show_drawing(sketch(STROKES[3])))


def test_agreement_line(app):
    agree = {k: {"top": [{"character": "十", "value": 10}], "ms": 1.0} for k in ("cnn", "resnet18")}
    assert app.agreement(agree) == "✅ Both models read **十 (10)**."
    agree["resnet18"]["top"] = [{"character": "亿", "value": 100000000}]
    assert app.agreement(agree) == "🤔 The models disagree: CNN reads **十 (10)**, ResNet-18 reads **亿 (100,000,000)**."


def test_canonicalizes_once_per_request(app, ten, monkeypatch):
    calls = []
    real = app.ch.canonicalize
    monkeypatch.setattr(app.ch, "canonicalize", lambda image: calls.append(1) or real(image))
    app.predict_both(ten)
    assert len(calls) == 1
    app.show(ten)
    assert len(calls) == 2


def test_blank_canvas_asks_for_a_drawing(app):
    for value in (None, {"background": None, "layers": [], "composite": None}, sketch([]),
                  {"background": None, "layers": [], "composite": np.full((400, 400, 4), 255, np.uint8)}):
        check_nothing_shown(app.show_drawing(value), "Draw a character")
    assert set(app.predict_both(np.full((64, 64), 255, np.uint8))) == {"error"}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("bad_uploads")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 64)
    (d / "text.png").write_text("not an image")
    Image.new("RGBA", (120, 80), (0, 0, 0, 0)).save(d / "transparent.png")
    Image.new("1", (7000, 6000), 1).save(d / "huge.png")  # 42 megapixels, a few kB
    return {p.stem: str(p) for p in d.iterdir()}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("name, words", [
    ("corrupt", "not an image we can read"), ("text", "not an image we can read"),
    ("transparent", "fully transparent"), ("huge", "too large"),
])
def test_bad_uploads_get_a_plain_message(app, bad_files, name, words):
    path = bad_files[name]
    error = app.predict_both(path)["error"]
    assert words in error and path not in error and "Traceback" not in error and "\n" not in error
    check_nothing_shown(app.show(path, "Upload an image", explain_blank=True), words)


def test_upload_handler_switches_to_upload_tab(app, tmp_path):
    Image.fromarray(draw_character(STROKES[2])).save(tmp_path / "two.png")
    tabs, *shown = app.show_upload(str(tmp_path / "two.png"))
    assert tabs.selected == "upload"
    check_shown(tuple(shown))
    check_nothing_shown(tuple(app.show_upload(None)[1:]), "Upload an image")


def test_examples_exist_and_are_read(app):
    assert len(app.EXAMPLES) >= 6
    for path in app.EXAMPLES:
        check_answer(app.predict_both(str(path)))


def test_unloadable_model_stops_the_start_with_one_line(demo_models, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    runs = [  # in parallel: each pays for importing torch and gradio
        ([f"--cnn={tmp_path / 'nonexistent'}", f"--resnet={demo_models[1]}"], {}, "CNN"),
        ([f"--cnn={demo_models[0]}"], {"CHNMNIST_RESNET": str(broken)}, "ResNet-18"),
    ]
    procs = [subprocess.Popen([sys.executable, str(APP), *args], cwd=ROOT, env=app_env(**env),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args, env, _ in runs]
    try:
        results = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (out, err), (_, _, which) in zip(procs, results, runs):
        assert proc.returncode == 2, (out, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith(f"demo: cannot load the {which} model: ")
