"""Fixtures for the demo's tests: the two models it serves, its module, and one running app.

``demo_models``: the bundled release folders ``models/chnmnist-cnn`` and ``models/chnmnist-resnet18``
when both exist, else untrained models written to a temp dir (enough for plumbing tests; never
assert that their answer is right). ``demo_server``: ``demo/app.py`` launched in a subprocess on
127.0.0.1 and a free port, shared by the tests of a module and killed after them. Import them into a
test module with ``from tests.demo_fixture import demo_models, demo_server  # noqa: F401`` (pytest
then makes one instance per importing module, whatever the scope says).
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "demo" / "app.py"
STARTUP_TIMEOUT_S = 180  # importing torch and gradio on a busy 2-core machine takes tens of seconds


def load_app():
    """demo/app.py as a module (demo/ is not a package); importing it must not launch anything."""
    spec = importlib.util.spec_from_file_location("chnmnist_demo_app", APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def app_env(**extra) -> dict:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONUNBUFFERED="1")
    env.pop("CHNMNIST_CNN", None)
    env.pop("CHNMNIST_RESNET", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory) -> tuple[str, str]:
    """(cnn, resnet18) model folders for the demo."""
    release = (ROOT / "models" / "chnmnist-cnn", ROOT / "models" / "chnmnist-resnet18")
    if all((p / "config.json").is_file() and (p / "model.safetensors").is_file() for p in release):
        return str(release[0]), str(release[1])
    import chnmnist_hub as ch

    d = tmp_path_factory.mktemp("demo_models")
    ch.create_model("cnn").save_pretrained(d / "cnn")
    ch.create_model("resnet18").save_pretrained(d / "resnet18")
    return str(d / "cnn"), str(d / "resnet18")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_server(demo_models, tmp_path_factory):
    """The base URL of demo/app.py running in a subprocess, e.g. http://127.0.0.1:41234/."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    tmp = tmp_path_factory.mktemp("demo_server")
    log_path = tmp / "app.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(APP), "--cnn", demo_models[0], "--resnet", demo_models[1], "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=app_env(GRADIO_TEMP_DIR=str(tmp / "gradio")))
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"demo/app.py exited with status {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"demo/app.py did not answer on {url} within {STARTUP_TIMEOUT_S} s:\n"
                            f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
