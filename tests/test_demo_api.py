"""The running demo's /predict endpoint, through gradio_client."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from tests.conftest import STROKES, draw_character
from tests.demo_fixture import demo_models, demo_server  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("api_images")
    for value, strokes in STROKES.items():
        Image.fromarray(draw_character(strokes)).save(d / f"{value}.png")
    Image.new("L", (200, 200), 255).save(d / "blank.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return {p.stem: str(p) for p in d.iterdir()}


@pytest.fixture(scope="module")
def client(demo_server):
    from gradio_client import Client

    return Client(demo_server, verbose=False)


def predict(client, path):
    from gradio_client import handle_file

    return client.predict(handle_file(path), api_name="/predict")


def check_answer(result: dict) -> None:
    assert set(result) == {"cnn", "resnet18"}, result
    for answer in result.values():
        assert isinstance(answer["ms"], (int, float)) and answer["ms"] > 0
        assert len(answer["top"]) == 5
        for item in answer["top"]:
            assert set(item) == {"index", "character", "value", "probability"}
            assert 0 <= item["index"] < 15 and 0.0 <= item["probability"] <= 1.0


def test_only_predict_is_public(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/predict"] and not api["unnamed_endpoints"]


def test_predict_returns_both_models(client, images):
    check_answer(predict(client, images["10"]))


@pytest.mark.parametrize("name", ["blank", "corrupt"])
def test_bad_image_returns_error(client, images, name):
    result = predict(client, images[name])
    assert list(result) == ["error"] and isinstance(result["error"], str) and result["error"]
    assert "/tmp" not in result["error"] and "Traceback" not in result["error"]


def test_eight_concurrent_clients(demo_server, images):
    from gradio_client import Client

    def user(n: int) -> list[dict]:
        c = Client(demo_server, verbose=False)
        return [predict(c, images[str(v)]) for v in (1, 2, 3)[: 2 + n % 2]]

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(user, range(8)) for r in rs]
    assert len(results) == 20
    for r in results:
        check_answer(r)
