"""The demo in headless Chromium: draw, upload, and render with no internet.

The models may be untrained here, so the tests check that both answers appear, never that they
are right.
"""
from __future__ import annotations

import re
import shutil
from urllib.parse import urlsplit

import pytest
from PIL import Image

import chnmnist_hub as ch
from tests.conftest import STROKES, draw_character
from tests.demo_fixture import demo_models, demo_server  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
ANSWER = re.compile(r"^([" + "".join(label.character for label in ch.LABELS) + r"]) \([\d,]+\)$", re.M)
TIMEOUT_MS = 60_000  # a busy CI machine with software rendering is slow


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def open_demo(page, url: str) -> None:
    page.goto(url)
    page.locator("#sketchpad canvas").first.wait_for()


def answers(page) -> dict[str, str]:
    """The top answer each model's label shows, once both show one."""
    for key in ("cnn", "resnet18"):
        page.locator(f"#label-{key}").get_by_text(ANSWER).first.wait_for()
    return {key: ANSWER.search(page.locator(f"#label-{key}").inner_text()).group(1) for key in ("cnn", "resnet18")}


def test_draw_without_choosing_a_tool(page, demo_server):
    open_demo(page, demo_server)
    # No click on any tool: the page selects the brush itself (wait for that, as a person would
    # take a moment before the first stroke).
    page.locator('#sketchpad button[title="Brush"].highlight').wait_for()
    box = page.locator("#sketchpad canvas").first.bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) * 0.3
    for stroke in STROKES[10]:  # 十
        (x0, y0), (x1, y1) = stroke
        page.mouse.move(cx + (x0 - 0.5) * 2 * r, cy + (y0 - 0.5) * 2 * r)
        page.mouse.down()
        for t in (0.25, 0.5, 0.75, 1.0):
            page.mouse.move(cx + (x0 + (x1 - x0) * t - 0.5) * 2 * r, cy + (y0 + (y1 - y0) * t - 0.5) * 2 * r)
        page.mouse.up()
    got = answers(page)
    assert set(got) == {"cnn", "resnet18"}
    assert re.search(r"Both models read|disagree", page.locator("#status").inner_text())
    assert re.search(r"\d ms", page.locator("#ms-cnn").inner_text())


def test_upload_an_image(page, demo_server, tmp_path):
    png = tmp_path / "three.png"
    Image.fromarray(draw_character(STROKES[3])).save(png)
    open_demo(page, demo_server)
    page.get_by_role("tab", name="Upload").click()
    page.locator("#upload input[type=file]").set_input_files(str(png))
    assert set(answers(page)) == {"cnn", "resnet18"}


def test_renders_offline(page, demo_server, tmp_path):
    outside = []

    def only_local(route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname != "127.0.0.1":
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", only_local)
    open_demo(page, demo_server)
    page.locator('#sketchpad button[title="Brush"].highlight').wait_for()
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("heading", name="Handwritten Chinese numerals").is_visible()
    assert page.locator("#label-cnn").is_visible() and page.locator("#label-resnet18").is_visible()
    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot), full_page=True)
    try:
        shutil.copy(shot, "/tmp/demo_screenshot.png")
    except OSError:
        pass
    assert Image.open(shot).convert("L").getextrema()[0] < 100  # not a blank page
    assert outside == [], f"the page asked for outside resources: {outside}"
