"""python -m chnmnist_hub predict|evaluate, run as a user runs it: one JSON object a line, no tracebacks."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

import chnmnist_hub as ch
from chnmnist_hub.evaluate import evaluate_dataset
from tests.conftest import ROOT, STROKES, draw_character


def run_cli(*args, timeout=240):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8"}
    p = subprocess.run([sys.executable, "-m", "chnmnist_hub", *map(str, args)], capture_output=True, text=True,
                       encoding="utf-8", cwd=ROOT, env=env, timeout=timeout)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    return p


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _save_tiny(folder, seed, training=None):
    torch.manual_seed(seed)
    model = ch.ChnmnistModel.create("cnn", {"filters": [4, 8]}, training=training)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_models")
    return _save_tiny(root / "tiny-a", 0), _save_tiny(root / "tiny-b", 1)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_images")
    files = {}
    for k in (1, 3, 10):
        files[k] = folder / f"char{k}.png"
        Image.fromarray(draw_character(STROKES[k])).save(files[k])
    (folder / "notes.txt").write_text("not an image")
    Image.new("L", (100, 100), 255).save(folder / "blank.png")
    return folder, files


def _check_top(top, k):
    assert len(top) == k
    for item in top:
        assert set(item) == {"index", "character", "value", "probability"}
        label = ch.LABELS[item["index"]]
        assert item["character"] == label.character and item["value"] == label.value
        assert 0 <= item["probability"] <= 1
    probs = [item["probability"] for item in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5


def test_predict_two_models_with_bad_files(models, images):
    a, b = models
    folder, files = images
    args = ["predict", "--model", a, "--model", b, "--top-k", "3",
            files[1], folder / "notes.txt", files[3], folder / "blank.png", folder / "missing.png"]
    p = run_cli(*args)
    assert p.returncode == 1, p.stderr
    rows = json_lines(p.stdout)
    good = [r for r in rows if "top" in r]
    bad = [r for r in rows if "error" in r]
    assert len(rows) == len(good) + len(bad)
    assert [(r["file"], r["model"]) for r in good] == [(str(f), str(m)) for f in (files[1], files[3]) for m in (a, b)]
    for r in good:
        assert set(r) == {"file", "model", "top"}
        _check_top(r["top"], 3)
    assert [r["file"] for r in bad] == [str(folder / n) for n in ("notes.txt", "blank.png", "missing.png")]
    for r in bad:
        assert set(r) == {"file", "error"} and r["error"] and "\n" not in r["error"]
    assert "no character found" in bad[1]["error"]
    assert "does not exist" in bad[2]["error"]
    # the output matches the library's own predictions
    expected = ch.load_model(a).predict([str(files[1])], top_k=3)[0]
    assert good[0]["top"] == expected
    # the two models are different networks, so their answers differ
    assert good[0]["top"] != good[1]["top"]


def test_predict_all_good(models, images):
    a, _ = models
    _, files = images
    p = run_cli("predict", "--model", a, *files.values())
    assert p.returncode == 0, p.stderr
    rows = json_lines(p.stdout)
    assert [r["file"] for r in rows] == [str(f) for f in files.values()]
    for r in rows:
        assert r["model"] == str(a)
        _check_top(r["top"], 5)  # default top-k


def test_unknown_model(images, tmp_path):
    p = run_cli("predict", "--model", tmp_path / "no-such-model", images[1][1])
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "no-such-model" in lines[0], p.stderr


@pytest.mark.parametrize("args, words", [
    (["predict", "--model", "{a}", "--top-k", "0", "{image}"], "top-k"),
    (["predict", "--model", "{a}", "--top-k", "many", "{image}"], "top-k"),
    (["predict", "{image}"], "--model"),
    (["predict", "--model", "{a}"], "FILE"),
    (["evaluate", "--model", "{a}"], "--data"),
    (["evaluate", "--model", "{a}", "--data", "{image}", "--split", "both"], "split"),
    (["train"], "invalid choice"),
], ids=["top-k 0", "top-k word", "no model", "no files", "no data", "bad split", "unknown command"])
def test_usage_errors(models, images, capsys, args, words):
    """In-process (main(argv)) to keep the suite fast: the same code path as the subprocess."""
    from chnmnist_hub.cli import main

    subs = {"image": str(images[1][1]), "a": str(models[0])}
    try:
        status = main([a.format(**subs) for a in args])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], err


# ---------------------------------------------------------------- evaluate

def _writer_trained(folder, dataset):
    return _save_tiny(folder, 2, training={
        "split": "writer", "train_writers": list(range(1, 86)), "val_writers": list(range(86, 91)),
        "test_writers": list(range(91, 101)), "seed": 0, "data_fingerprint": dataset.fingerprint()})


@pytest.fixture(scope="module")
def writer_model(dataset, tmp_path_factory):
    return _writer_trained(tmp_path_factory.mktemp("writer") / "tiny-writer", dataset)


def test_evaluate_defaults_to_writer_split(writer_model, data_zip, dataset):
    p = run_cli("evaluate", "--model", writer_model, "--data", data_zip)
    assert p.returncode == 0, p.stderr
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert last["split"] == "writer" and last["n"] == 1500
    assert 0.0 <= last["accuracy"] <= 1.0
    # the score is the model's on suites 91-100, computed the same way in-process
    here = evaluate_dataset(ch.load_model(writer_model), dataset)
    assert here["n"] == 1500 and here["split"] == "writer"
    assert abs(here["accuracy"] - last["accuracy"]) < 1e-6


def test_evaluate_refuses_random_split_for_writer_model(writer_model, data_zip, capsys):
    # in-process (main(argv)); the subprocess path is exercised by the test above
    from chnmnist_hub.cli import main

    status = main(["evaluate", "--model", str(writer_model), "--data", str(data_zip), "--split", "random"])
    out, err = capsys.readouterr()
    assert status == 2
    assert out.strip() == ""
    assert "refusing" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_random_split_model_in_process(dataset, tmp_path):
    """The mirror case, without a subprocess: a random-split model scores its own test part and refuses
    the writer test part (its training part holds images of suites 91-100)."""
    folder = _save_tiny(tmp_path / "tiny-random", 3, training={
        "split": "random", "seed": 4, "data_fingerprint": dataset.fingerprint()})
    model = ch.load_model(folder)
    result = evaluate_dataset(model, dataset)
    assert result["split"] == "random" and result["n"] == 1500
    with pytest.raises(ch.DataError, match="refusing"):
        evaluate_dataset(model, dataset, "writer")
    # a different fingerprint: it cannot tell what the model trained on, so it refuses
    cfg = json.loads((folder / "config.json").read_text())
    cfg["chnmnist"]["training"]["data_fingerprint"] = "0" * 16
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ch.DataError, match="refusing"):
        evaluate_dataset(ch.load_model(folder), dataset)


def test_evaluate_labelled_folder(models, tmp_path):
    a, _ = models
    folder = tmp_path / "sketches"
    folder.mkdir()
    rows = []
    for k, index in ((1, 1), (2, 2), (3, 3), (10, 10)):
        name = f"s{k}.png"
        Image.fromarray(draw_character(STROKES[k])).save(folder / name)
        rows.append((name, index))
    Image.new("L", (64, 64), 255).save(folder / "blank.png")
    rows.append(("blank.png", 0))
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "index"])
        w.writerows(rows)
    p = run_cli("evaluate", "--model", a, "--data", folder)
    assert p.returncode == 0, p.stderr
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert last["n"] == 5 and "split" in last
    # the blank image counts as wrong; the rest is what the model predicts
    model = ch.load_model(a)
    preds = [top[0]["index"] for top in model.predict([str(folder / n) for n, _ in rows[:4]], top_k=1)]
    expected = sum(p_ == i for p_, (_, i) in zip(preds, rows[:4])) / 5
    assert abs(last["accuracy"] - expected) < 1e-6
