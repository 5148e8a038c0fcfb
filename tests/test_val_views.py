"""tools/val_views.py: test-time view sets scored on validation images only."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

import chnmnist_hub as ch

pytestmark = pytest.mark.dataset
from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("val_views", ROOT / "tools" / "val_views.py")
val_views = importlib.util.module_from_spec(spec)
spec.loader.exec_module(val_views)


def test_one_view_counts_the_models_own_errors_and_the_views_change_the_input(dataset):
    torch.manual_seed(0)
    model = ch.create_model("cnn", filters=[4, 8]).eval()
    idx = np.flatnonzero(np.isin(dataset.writers, [86]))[:40]
    canon = np.stack([ch.preprocess.canonicalize_uint8(im) for im in dataset.images[idx]])
    scores = val_views.score_sets(model, canon, dataset.labels[idx], batch=16)
    assert set(scores) == set(val_views.SETS) and all(s["n"] == 40 for s in scores.values())
    x = torch.from_numpy(canon)[:, None].float() / 255
    with torch.inference_mode():
        wrong = int((model(x).argmax(1) != torch.from_numpy(dataset.labels[idx])).sum())
    assert scores["one view"]["errors"] == wrong
    for name, view in val_views.VIEWS.items():
        out = view(x)
        assert out.shape == x.shape and not torch.equal(out, x), name
    # A shift moves the ink's centre of mass the way its name says, by about 2 px.
    cols = torch.arange(64.0)
    centre = lambda t: float((t.sum((0, 1, 2)) * cols).sum() / t.sum())
    assert centre(val_views.VIEWS["right 2 px"](x)) - centre(x) == pytest.approx(2, abs=0.3)


def test_written_smaller_scores_count_each_writers_errors_and_blanks(dataset):
    torch.manual_seed(0)
    model = ch.create_model("cnn", filters=[4, 8]).eval()
    idx = np.flatnonzero(np.isin(dataset.writers, [86, 87]))[::10]
    raw, labels, writers = dataset.images[idx], dataset.labels[idx], dataset.writers[idx]
    scores = val_views.score_smaller(model, raw, labels, writers, factors=(0.7, 0.02))
    assert set(scores) == {"70%", "2%"}
    # Shrunk to a 1-pixel square every character vanishes: all blank, all wrong.
    assert scores["2%"]["blank"] == scores["2%"]["errors"] == len(idx)
    s = scores["70%"]
    assert s["n"] == len(idx) and s["blank"] == 0 and sum(s["by_writer"].values()) == s["errors"]
    small = ch.preprocess.canonicalize_dataset(ch.augment.written_smaller(raw, [0.7] * len(raw)))
    with torch.inference_mode():
        wrong = int((model(torch.from_numpy(small)[:, None].float() / 255).argmax(1) != torch.from_numpy(labels)).sum())
    assert s["errors"] == wrong


def test_a_model_without_validation_images_is_refused_in_one_line(data_zip, tmp_path):
    model = ch.create_model("cnn", filters=[4, 8])
    config = {**model.config, "chnmnist": {**model.config["chnmnist"], "training": {"split": "writer", "n_val": 0}}}
    model.save_pretrained(tmp_path / "m", config=config)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "val_views.py"), str(tmp_path / "m"), "--data", str(data_zip)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'm'} was trained without validation images (--no-val): nothing to score views on"]


@pytest.mark.parametrize("name", ["chnmnist-cnn", "chnmnist-resnet18"])
def test_benchmarks_small_writing_figures_are_the_bundled_models_own(dataset, name):
    """bench/results/val_views-*.json (and BENCHMARKS.md's table drawn from it) hold what the bundled
    model does today with its validation writers' characters shrunk to 70%."""
    import json

    saved = json.loads((ROOT / "bench" / "results" / f"val_views-{name.split('-')[1]}.json").read_text(encoding="utf-8"))
    model = ch.load_model(ROOT / "models" / name)
    idx = np.flatnonzero(np.isin(dataset.writers, model.config["chnmnist"]["training"]["val_writers"]))
    got = val_views.score_smaller(model, dataset.images[idx], dataset.labels[idx], dataset.writers[idx], factors=(0.7,))
    assert got["70%"] == saved["written_smaller"]["70%"]
    row = next(l for l in (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8").splitlines() if l.startswith(f"| models/{name} | "))
    assert f"| {got['70%']['errors']} ({got['70%']['blank']} blank) |" in row
