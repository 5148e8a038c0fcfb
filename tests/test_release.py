"""The bundled release models: their accuracy, measured here, against the targets and their cards."""
import hashlib
import json

import numpy as np
import pytest

import chnmnist_hub as ch
from chnmnist_hub import preprocess
from chnmnist_hub.evaluate import evaluate_dataset, evaluate_folder
from tests.conftest import ROOT

SKETCHSET = ROOT / "data" / "sketchset"
# Targets of the release (issue "Release models that read real handwriting").
TARGETS = {
    "chnmnist-cnn": {"writer": 0.985, "sketch": 0.97, "random": 0.993},
    "chnmnist-resnet18": {"writer": 0.995, "sketch": 0.99, "random": 0.997},
}
# Targets this release does not reach; the figures are in the cards and in the note.
# The ResNet's writer test is 1 image under its target (8 errors of 1500; 7 would meet it).
MISSED = {("chnmnist-resnet18", "writer")}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def release(request, models_dir):
    folder = models_dir / request.param
    assert (folder / "config.json").exists(), f"{folder} is missing: the release models are part of the repository"
    return request.param, folder, ch.load_model(folder), json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def writer_scores(release, dataset):
    name, _, model, _ = release
    return evaluate_dataset(model, dataset)


def _check(name, key, value):
    target = TARGETS[name][key]
    if (name, key) in MISSED:
        # Strict: a release that reaches the target fails here until it is taken off MISSED.
        assert value < target, f"{name} now reaches the {key} target ({value:.4f}); take it off MISSED"
        pytest.xfail(f"{name} misses the {key} target: {value:.4f} < {target}")
    assert value >= target, f"{name}: {key} accuracy {value:.4f} is below the target {target}"


def test_writer_split_accuracy_meets_target_and_card(release, writer_scores):
    name, _, _, metrics = release
    assert writer_scores["split"] == "writer" and writer_scores["n"] == 1500
    assert writer_scores["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9), "the card's figure is not what evaluate measures"
    _check(name, "writer", writer_scores["accuracy"])


def test_sketch_set_accuracy_meets_target_and_card(release):
    name, _, model, metrics = release
    result = evaluate_folder(model, SKETCHSET)
    assert result["n"] == 750 and not result["unreadable"]
    assert result["accuracy"] == pytest.approx(metrics["sketch_accuracy"], abs=1e-9)
    _check(name, "sketch", result["accuracy"])


def test_random_split_twin_meets_target(release):
    name, _, _, metrics = release
    _check(name, "random", metrics["random_split_accuracy"])


def test_card_states_the_measured_figures(release):
    _, folder, _, metrics = release
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert f"value: {metrics['test_accuracy']:.4f}" in card and f"value: {metrics['sketch_accuracy']:.4f}" in card
    assert f"{100 * metrics['random_split_accuracy']:.2f}%" in card
    assert "〇" in card and "training_curves.png" in card and "confusion_matrix.png" in card


def test_preprocessing_still_gives_the_training_inputs(release, dataset):
    """The released weights saw these canonical images; a change to canonicalize that alters them
    must bump its version (and the models must be retrained)."""
    _, _, model, _ = release
    recorded = model.config["chnmnist"]["training"]["canonical_sha1"][0]
    assert hashlib.sha1(preprocess.canonicalize_dataset(dataset.images).tobytes()).hexdigest() == recorded


def test_resnet_folder_is_small_and_fp16_changes_no_answer(release, dataset):
    name, folder, model, metrics = release
    if name != "chnmnist-resnet18":
        assert (folder / "model.safetensors").stat().st_size < 5_000_000
        return
    assert sum(p.stat().st_size for p in folder.iterdir()) < 25_000_000
    assert model.config["chnmnist"]["weights_dtype"] == "float16"
    # Stored fp16, loaded fp32, one view: the accuracy the float32 weights had at the end of training.
    single = ch.load_model(folder)
    single.config["chnmnist"]["tta"] = {}
    acc = evaluate_dataset(single, dataset)["accuracy"]
    assert acc == pytest.approx(metrics["test_accuracy_at_training"], abs=0.0015)


def test_cli_evaluate_prints_the_release_figure(release, data_zip):
    import subprocess
    import sys

    name, folder, _, metrics = release
    proc = subprocess.run([sys.executable, "-m", "chnmnist_hub", "evaluate", "--model", str(folder), "--data", str(data_zip)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["split"] == "writer" and last["n"] == 1500
    assert last["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_benchmarks_md_shows_the_bundled_figures(release):
    """BENCHMARKS.md's release table is generated from the folders; it must not lag a new release."""
    name, _, _, metrics = release
    rows = [line for line in (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8").splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 1, f"{name} is not in BENCHMARKS.md's release table: run bench/tables.py"
    for key in ("test_accuracy", "sketch_accuracy", "random_split_accuracy"):
        assert f"{100 * metrics[key]:.2f}%" in rows[0], f"BENCHMARKS.md shows another {key} for {name}: run bench/tables.py"
