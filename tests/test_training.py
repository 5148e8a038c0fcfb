"""train.py end to end: real subprocess runs on the CPU, one process and two (torchrun, gloo).

Every run is tiny (CNN with 8/16 filters, a few hundred to 1500 training images, 1-3 epochs) and
scores a 4-image sketch set made here, so the whole file stays within a few minutes on 2 cores.
Runs are module-scoped fixtures shared between the tests that check them.

Kills "during a save" are made deterministic without touching the code under test: the trainer
writes every file to ``.NAME.tmp-PID`` first, so once the PID is known a FIFO is put at that
path; the trainer then blocks half-way through writing it, and is killed there with SIGKILL.
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, STROKES, draw_character, need

pytestmark = [pytest.mark.dataset, pytest.mark.slow]

TRAIN = str(ROOT / "train.py")
RUN_TIMEOUT = 300  # seconds; a hung run fails the test instead of hanging CI
TMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HUB_FILES = ("config.json", "model.safetensors", "README.md", "metrics.json", "training_curves.png", "confusion_matrix.png")
HELP_FLAGS = ["--model", "--data", "--split", "--epochs", "--lr", "--batch-size", "--seed", "--device", "--out", "--subset",
              "--resume", "--compile", "--no-amp", "--push-to-hub", "--recipe", "--filters", "--pool", "--batchnorm",
              "--swa-epochs", "--swa-lr", "--val-writers", "--init", "--no-val", "--small-writing"]


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def sketchset(tmp_path_factory) -> Path:
    """A 4-image labelled folder: keeps the end-of-run sketch scoring (750 images: ~1 min) quick."""
    from PIL import Image

    from chnmnist_hub.labels import INDEX_BY_VALUE

    folder = tmp_path_factory.mktemp("sketchset")
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "index"])
        for value, strokes in STROKES.items():
            Image.fromarray(draw_character(strokes)).save(folder / f"{value}.png")
            w.writerow([f"{value}.png", INDEX_BY_VALUE[value]])
    return folder


@pytest.fixture(scope="module")
def common(data_zip, sketchset) -> list[str]:
    return ["--model", "cnn", "--data", str(data_zip), "--device", "cpu", "--quiet", "--filters", "8", "16",
            "--sketchset", str(sketchset)]


def _env() -> dict:
    env = dict(os.environ)
    env.pop("CHNMNIST_DATA", None)  # every run names --data itself
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny runs on a shared CPU: no threads spinning idle
    return env


def train(*args, torchrun: int = 0) -> subprocess.CompletedProcess:
    if torchrun:
        launcher = Path(sys.executable).with_name("torchrun")
        cmd = ([str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"])
        cmd += ["--standalone", f"--nproc_per_node={torchrun}", TRAIN]
    else:
        cmd = [sys.executable, TRAIN]
    return subprocess.run(cmd + [str(a) for a in args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, TRAIN] + [str(a) for a in args], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"train.py failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The run failed with exit status 1 and said why in one line, without a traceback."""
    assert r.returncode == 1, f"exit status {r.returncode}, expected 1:\n{r.stderr[-5000:]}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{r.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def wait_until(cond, proc: subprocess.Popen, timeout: float = 120, what: str = "") -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"train.py ended ({proc.returncode}) before {what}:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def kill9(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    rc = proc.wait(timeout=60)
    proc.stderr.close()
    return rc


def fifo_trap(proc: subprocess.Popen, folder: Path, name: str, timeout: float = 120) -> None:
    """Kill ``proc`` while it is half-way through writing ``name`` (through its temporary file)."""
    fifo = folder / f".{name}.tmp-{proc.pid}"
    os.mkfifo(fifo)  # fails loudly if the trainer already started that write
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        got = 0
        t0 = time.monotonic()
        while got == 0:
            try:
                got += len(os.read(fd, 4096))  # b"" while no writer has opened it yet
            except BlockingIOError:
                pass  # a writer is connected but wrote nothing yet
            if proc.poll() is not None:
                pytest.fail(f"train.py ended ({proc.returncode}) before writing {name}:\n{proc.stderr.read()[-3000:]}")
            if time.monotonic() - t0 > timeout:
                proc.kill()
                pytest.fail(f"timed out waiting for train.py to write {name}")
            time.sleep(0.01)
        time.sleep(0.2)  # the writer now blocks on the full pipe: mid-write
        assert proc.poll() is None, f"train.py did not block while writing {name} to a pipe"
        assert kill9(proc) == -signal.SIGKILL
    finally:
        os.close(fd)


def read_checkpoint(path: Path) -> dict:
    """Open a checkpoint as safetensors, read every tensor; its metadata."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
        for k in f.keys():
            assert f.get_tensor(k) is not None
    assert isinstance(meta["epoch"], int) and len(meta["history"]) == meta["epoch"] + 1
    return meta


def real_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not TMP_RE.match(p.name)}


def tmp_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if TMP_RE.match(p.name)}


def check_consistent(folder: Path) -> None:
    """Whatever a killed run left is whole: every real file parses; temporary files are ignored."""
    import chnmnist_hub as ch

    if not folder.exists():
        return
    names = real_files(folder)
    assert names <= set(HUB_FILES) | {"checkpoint.safetensors", "metrics.jsonl"}, names
    if "checkpoint.safetensors" in names:
        read_checkpoint(folder / "checkpoint.safetensors")
    if "metrics.jsonl" in names:
        rows = [json.loads(l) for l in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    if "config.json" in names:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if "metrics.json" in names:
        json.loads((folder / "metrics.json").read_text())
    for png in ("training_curves.png", "confusion_matrix.png"):
        if png in names:
            check_png(folder / png)
    if "model.safetensors" in names:
        ch.load_model(folder)  # raises if config and weights are not a whole, matching pair


def check_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG" and min(im.size) >= 100, (im.format, im.size)


def front_matter(readme: str) -> dict:
    import yaml

    assert readme.startswith("---\n"), readme[:200]
    end = readme.index("\n---", 4)
    meta = yaml.safe_load(readme[4:end])
    assert isinstance(meta, dict)
    return meta


def card_accuracy(meta: dict, dataset_type: str) -> float:
    index = meta["model-index"]
    assert isinstance(index, list) and index
    for result in index[0]["results"]:
        if result["dataset"]["type"] == dataset_type:
            assert result["task"]["type"] == "image-classification"
            (metric,) = [m for m in result["metrics"] if m["type"] == "accuracy"]
            return float(metric["value"])
    pytest.fail(f"model-index has no result for {dataset_type}: {index}")


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    import torch

    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].shape == wb[k].shape, k
        if wa[k].is_floating_point():
            assert torch.allclose(wa[k], wb[k], rtol=0, atol=atol), f"{k}: max diff {(wa[k] - wb[k]).abs().max()}"
        else:
            assert torch.equal(wa[k], wb[k]), k


def jsonl(folder: Path) -> list[dict]:
    return [json.loads(l) for l in (folder / "metrics.jsonl").read_text().splitlines() if l.strip()]


def check_model_folder(out: Path, world_size: int, n_train: int) -> dict:
    """The folder a finished run leaves: loadable, with its card, plots and metrics."""
    import chnmnist_hub as ch

    model = ch.load_model(out)
    top = model.predict([draw_character(STROKES[3])], top_k=15)[0]
    assert len(top) == 15 and abs(sum(t["probability"] for t in top) - 1) < 1e-3

    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    training = config["chnmnist"]["training"]
    assert training["n_train"] == n_train and training["split"] == "writer"
    assert config["chnmnist"]["model_args"]["filters"] == [8, 16]

    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == world_size
    assert m["split"] == "writer"
    assert m["device"].startswith("cpu")
    assert m["train_seconds"] > 0 and m["images_per_second"] > 0
    assert m["n_test"] == 1500  # writers 91-100, 150 images each
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (15, 15) and cm.dtype.kind == "i" and (cm >= 0).all()
    assert cm.sum() == m["n_test"]
    assert m["test_accuracy"] == pytest.approx(np.trace(cm) / cm.sum(), abs=1e-9)
    per_class = m["per_class_accuracy"]
    assert len(per_class) == 15 and all(0 <= p <= 1 for p in per_class)
    np.testing.assert_allclose(per_class, np.diag(cm) / np.maximum(cm.sum(1), 1), atol=1e-9)
    assert 0 <= m["sketch_accuracy"] <= 1

    card = front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert card["library_name"] == "chnmnist_hub"
    assert card_accuracy(card, "chinese-mnist") == pytest.approx(m["test_accuracy"], abs=5.001e-5)
    assert card_accuracy(card, "chnmnist-sketchset") == pytest.approx(m["sketch_accuracy"], abs=5.001e-5)

    check_png(out / "training_curves.png")
    check_png(out / "confusion_matrix.png")
    rows = jsonl(out)
    assert [r["epoch"] for r in rows] == list(range(1, m["epochs_run"] + 1))
    for r in rows:
        assert np.isfinite(r["train_loss"]) and 0 <= r["val_accuracy"] <= 1
    assert not tmp_files(out), f"a clean run left temporary files: {tmp_files(out)}"
    return m


# ---------------------------------------------------------------- 1-3: smoke, torchrun, first step

# --no-batchnorm: batch statistics would otherwise differ between 1 process (256 images) and 2 (128 each).
SMOKE = ["--epochs", "1", "--subset", "1500", "--batch-size", "256", "--no-batchnorm"]


@pytest.fixture(scope="module")
def smoke(common, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "model"
    r = ok(train("--out", out, *common, *SMOKE))
    assert "test accuracy" in r.stdout
    return out


@pytest.fixture(scope="module")
def smoke_ddp(common, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "model"
    ok(train("--out", out, *common, *SMOKE, torchrun=2))
    return out


def test_cpu_smoke_writes_a_complete_model_folder(smoke):
    check_model_folder(smoke, world_size=1, n_train=1500)
    assert len(jsonl(smoke)) == 1
    assert (smoke / "checkpoint.safetensors").exists()


def test_torchrun_two_processes_write_one_complete_folder(smoke_ddp):
    check_model_folder(smoke_ddp, world_size=2, n_train=1500)
    assert len(jsonl(smoke_ddp)) == 1


def test_one_and_two_processes_take_the_same_first_step(smoke, smoke_ddp):
    one = json.loads((smoke / "metrics.json").read_text())
    two = json.loads((smoke_ddp / "metrics.json").read_text())
    assert one["first_step_loss"] is not None and np.isfinite(one["first_step_loss"])
    assert two["first_step_loss"] == pytest.approx(one["first_step_loss"], rel=1e-5)
    # The same global batches then give (nearly) the same epoch, up to float summation order.
    assert jsonl(smoke_ddp)[0]["train_loss"] == pytest.approx(jsonl(smoke)[0]["train_loss"], rel=1e-3)


# ---------------------------------------------------------------- 4: resume and kills

# Batch norm on here: its running statistics must survive a resume too.
RESUME = ["--epochs", "3", "--subset", "384", "--batch-size", "128"]


@pytest.fixture(scope="module")
def uninterrupted(common, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume_a") / "model"
    ok(train("--out", out, *common, *RESUME))
    return out


def test_resume_after_sigkill_matches_an_uninterrupted_run(common, uninterrupted, tmp_path):
    out = tmp_path / "model"
    # Killed right after its first checkpoint...
    proc = start("--out", out, *common, *RESUME)
    wait_until(lambda: (out / "checkpoint.safetensors").exists(), proc, what="the first checkpoint")
    rc = kill9(proc)
    assert rc == -signal.SIGKILL, f"the run ended by itself ({rc}) before it could be killed"
    assert not (out / "model.safetensors").exists()
    check_consistent(out)
    done = len(jsonl(out))
    assert 1 <= done < 3

    # ... resumed, and killed again at a random moment after its next epoch ...
    proc = start("--out", out, *common, *RESUME, "--resume")
    wait_until(lambda: len(jsonl(out)) > done, proc, what="the resumed run's next epoch")
    delay = random.uniform(0, 0.5)
    time.sleep(delay)
    rc = kill9(proc)
    print(f"second kill {delay:.2f}s after epoch {done + 1}: exit status {rc}")
    check_consistent(out)

    # ... and resumed to the end: the same weights and log as the run never interrupted.
    ok(train("--out", out, *common, *RESUME, "--resume"))
    check_consistent(out)
    assert_same_weights(uninterrupted, out)
    a, b = jsonl(uninterrupted), jsonl(out)
    assert len(b) == 3
    for ra, rb in zip(a, b):
        assert rb["epoch"] == ra["epoch"]
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-6)
        assert rb["val_accuracy"] == pytest.approx(ra["val_accuracy"], abs=1e-9)
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (uninterrupted, out))
    assert mb["test_accuracy"] == pytest.approx(ma["test_accuracy"], abs=1e-9)
    assert mb["epochs_run"] == 3
    assert mb["first_step_loss"] == pytest.approx(ma["first_step_loss"], rel=1e-6)

    # The checkpoint refuses to continue under other settings, in one line.
    line = one_line_error(train("--out", out, *common, *RESUME, "--resume", "--seed", "1"))
    assert "--resume" in line and "seed" in line


def test_sigkill_in_the_middle_of_saves_leaves_only_whole_files(common, uninterrupted, tmp_path):
    import chnmnist_hub as ch

    out = tmp_path / "model"
    out.mkdir()
    # 1. Half-way through writing the epoch-2 checkpoint: epoch 1's stays, whole.
    proc = start("--out", out, *common, *RESUME)
    wait_until(lambda: (out / "checkpoint.safetensors").exists(), proc, what="the first checkpoint")
    fifo_trap(proc, out, "checkpoint.safetensors")
    assert read_checkpoint(out / "checkpoint.safetensors")["epoch"] == 0
    assert f".checkpoint.safetensors.tmp-{proc.pid}" in tmp_files(out)
    check_consistent(out)

    # 2. Resumed, then killed half-way through the final save: none of the model files appear.
    proc = start("--out", out, *common, *RESUME, "--resume")
    fifo_trap(proc, out, "model.safetensors")
    assert read_checkpoint(out / "checkpoint.safetensors")["epoch"] == 2
    assert real_files(out) == {"checkpoint.safetensors", "metrics.jsonl"}, real_files(out)
    with pytest.raises(ch.ModelError, match="config.json"):
        ch.load_model(out)  # the temporary files are not taken for the real ones
    check_consistent(out)

    # 3. Resumed once more: the checkpoint already holds every epoch; the model is A's.
    ok(train("--out", out, *common, *RESUME, "--resume"))
    check_consistent(out)
    assert_same_weights(uninterrupted, out)
    assert len(jsonl(out)) == 3
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (uninterrupted, out))
    assert mb["test_accuracy"] == pytest.approx(ma["test_accuracy"], abs=1e-9)
    assert mb["epochs_run"] == 3
    assert mb["first_step_loss"] == pytest.approx(ma["first_step_loss"], rel=1e-6)


# ---------------------------------------------------------------- 5: the seed recipe

def test_seed_recipe_records_the_reports_settings(common, tmp_path):
    out = tmp_path / "model"
    ok(train("--out", out, *common, "--recipe", "seed", "--epochs", "1", "--subset", "300"))
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    t = config["chnmnist"]["training"]
    assert t["recipe"] == "seed"
    assert t["lr"] == pytest.approx(1e-5)
    assert t["batch_size"] == 64
    assert t["augment"] is False
    assert t["optimizer"] == "sgd" and t["weight_decay"] == 0 and t["label_smoothing"] == 0
    assert config["chnmnist"]["model_args"] == {"filters": [8, 16], "pool": True, "batchnorm": False}
    m = json.loads((out / "metrics.json").read_text())
    assert m["recipe"] == "seed"
    assert jsonl(out)[0]["lr"] == pytest.approx(1e-5)  # constant, no warm-up


def test_weight_averaging_extends_a_finished_run(common, uninterrupted, tmp_path):
    """--swa-epochs after a finished schedule (here by --resume): constant-rate epochs, and the model
    written is their average with batch-norm statistics measured afresh for it."""
    import shutil

    import torch
    from safetensors.torch import load_file

    out = tmp_path / "model"
    shutil.copytree(uninterrupted, out)
    before = load_file(str(out / "checkpoint.safetensors"))
    ok(train("--out", out, *common, *RESUME, "--resume", "--swa-epochs", "2", "--swa-lr", "0.01"))
    rows = jsonl(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["lr"] for r in rows[3:]] == [0.01, 0.01]
    assert [r.get("swa_models") for r in rows] == [None, None, None, 1, 2]
    assert 0 <= rows[-1]["swa_val_accuracy"] <= 1
    t = json.loads((out / "config.json").read_text(encoding="utf-8"))["chnmnist"]["training"]
    assert (t["epochs"], t["swa_epochs"], t["swa_lr"]) == (3, 2, 0.01)
    assert "--resume" not in t["command"] and "--swa-epochs 2" in t["command"]
    assert "Trained for 3 + 2 epochs" in (out / "README.md").read_text(encoding="utf-8")

    ckpt = load_file(str(out / "checkpoint.safetensors"))
    model = weights(out)
    # The checkpoint names tensors as the wrapper holds them (net.*); model.safetensors as timm does.
    params = [k for k in model if f"swa.net.{k}" in ckpt]
    assert params and len(params) == len([k for k in ckpt if k.startswith("swa.")])
    for k in params:
        assert torch.allclose(model[k], ckpt[f"swa.net.{k}"], atol=1e-6), k
    # The average is not the last epoch's weights, nor the weights the run resumed from.
    assert any(not torch.allclose(model[k], ckpt[f"model.net.{k}"]) for k in params)
    assert any(not torch.allclose(model[k], before[f"model.net.{k}"]) for k in params)
    stats = [k for k in model if k.endswith("running_mean")]
    assert stats and all(not torch.allclose(model[k], ckpt[f"model.net.{k}"]) for k in stats)
    check_model_folder(out, world_size=1, n_train=384)


def test_averaged_weights_get_batch_norm_statistics_of_canonical_images():
    """_use_average: the average's parameters go in, and each batch norm's running mean becomes the
    mean of what reaches it from the (unaugmented) images, not what the last epoch left there."""
    import torch

    import chnmnist_hub as ch
    from chnmnist_hub.training import _use_average

    torch.manual_seed(0)
    model = ch.create_model("cnn", filters=[4, 8])
    swa = {k: p.detach() + 0.25 for k, p in model.named_parameters()}
    images = torch.randint(0, 256, (48, 64, 64), dtype=torch.uint8)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean.fill_(7.0)
    seen = []
    hook = bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    _use_average(model, swa, images, batch=16)  # three equal batches: their mean is the overall mean
    hook.remove()
    assert not model.training
    for k, p in model.named_parameters():
        assert torch.equal(p, swa[k]), k
    expected = torch.cat(seen).mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, expected, atol=1e-5)
    assert bn.momentum == 0.1  # restored for any later training


def test_a_final_fit_continues_a_model_on_its_validation_writers_too(common, uninterrupted, tmp_path):
    """--init DIR --no-val --epochs 0 --swa-epochs N: the finished model's weights are the start, suites
    86-90 join the training suites, nothing is validated, and the card gives both commands."""
    import torch

    out = tmp_path / "model"
    # A rate so small the average must stay at the --init weights: proof they were loaded.
    ok(train("--out", out, *common, "--init", uninterrupted, "--no-val", "--epochs", "0", "--swa-epochs", "1",
             "--swa-lr", "1e-7", "--subset", "256", "--batch-size", "128"))
    before, after = weights(uninterrupted), weights(out)
    params = [k for k in after if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for k in params:
        assert torch.allclose(after[k], before[k], atol=1e-5), k
    t = json.loads((out / "config.json").read_text(encoding="utf-8"))["chnmnist"]["training"]
    assert t["val_writers"] == [] and t["n_val"] == 0 and t["train_writers"] == list(range(1, 91))
    first = json.loads((uninterrupted / "config.json").read_text(encoding="utf-8"))["chnmnist"]["training"]
    assert t["init"] == {"from": "model", "command": first["command"], "epochs": 3, "swa_epochs": None}
    rows = jsonl(out)
    assert len(rows) == 1 and rows[0]["swa_models"] == 1 and "val_accuracy" not in rows[0]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Trained for 3 + 1 epochs" in card
    assert first["command"] + "\n# then, from those weights (model):\npython train.py" in card and "--no-val" in card
    m = json.loads((out / "metrics.json").read_text())
    assert 0 <= m["test_accuracy"] <= 1 and m["n_test"] == 1500


def test_init_from_another_split_or_model_fails_in_one_line(common, uninterrupted, tmp_path):
    out = tmp_path / "model"
    cont = ["--init", uninterrupted, "--epochs", "0", "--swa-epochs", "1", "--subset", "256"]
    # The writer model's training suites hold random-split test images: continuing it there would leak them.
    assert "test images" in one_line_error(train("--out", out, *common, *cont, "--split", "random"))
    r = train("--out", out, *[a if a != "16" else "32" for a in common], *cont)
    assert "filters" in one_line_error(r)
    assert "--init" in one_line_error(train("--out", out, *common, "--epochs", "0", "--swa-epochs", "1", "--subset", "256"))
    r = train("--out", out, *common, "--init", tmp_path / "nothing", "--epochs", "1", "--subset", "256")
    assert one_line_error(r) == f"error: --init {tmp_path / 'nothing'}: model folder {tmp_path / 'nothing'} does not exist"
    assert not out.exists()


def test_a_random_split_final_fit_counts_its_validation_images_as_trained(dataset):
    import chnmnist_hub as ch
    from chnmnist_hub.evaluate import trained_indices

    model = ch.create_model("cnn", filters=[4, 8])
    split = ch.make_split(dataset, "random", seed=3)
    info = {"split": "random", "seed": 3, "data_fingerprint": dataset.fingerprint()}
    for n_val, expected in ((750, split.train), (0, np.concatenate([split.train, split.val]))):
        model.config["chnmnist"]["training"] = {**info, "n_val": n_val}
        assert np.array_equal(np.sort(trained_indices(model, dataset)), np.sort(expected))


def test_written_smaller_keeps_the_character_at_its_factor_and_centred(dataset):
    from chnmnist_hub import augment

    images = dataset.images[:40]
    factors = np.linspace(0.45, 0.75, len(images))
    small = augment.written_smaller(images, factors)
    assert small.shape == images.shape and small.dtype == np.uint8
    for big, sm, f in zip(images.astype(float), small.astype(float), factors):
        side = round(64 * f)
        # Area averaging keeps the ink: the total shrinks with the area (each pixel rounded by at
        # most a half), and thin strokes fade rather than stay at full strength.
        assert sm.sum() == pytest.approx(big.sum() * side ** 2 / 64 ** 2, rel=0.03, abs=0.5 * side ** 2)
        assert sm.max() <= big.max()
        ys, xs = np.nonzero(sm)
        lo, hi = (64 - side) // 2, (64 - side) // 2 + side
        assert lo <= ys.min() and ys.max() < hi and lo <= xs.min() and xs.max() < hi
    with pytest.raises(ValueError, match="not in"):
        augment.written_smaller(images[:1], [1.2])


def test_small_writing_copies_come_only_from_the_runs_training_images(dataset):
    from chnmnist_hub import make_split, preprocess
    from chnmnist_hub.training import _small_writing

    split = make_split(dataset, "writer")
    train_idx = split.train[::40]
    a = _small_writing(dataset, train_idx, 0.5, seed=0)
    assert abs(len(a) - len(train_idx) / 2) <= 2  # all but a character shrunk to nothing
    assert set(a.writers.tolist()) <= set(dataset.writers[train_idx].tolist())
    assert not set(a.writers.tolist()) & set(range(86, 101))
    assert a.images.shape[1:] == (64, 64) and a.images.reshape(len(a), -1).any(1).all()
    # Each copy is the canonical form of a shrunk training image with its own label.
    orig = preprocess.canonicalize_dataset(dataset.images[train_idx])
    assert all(not any(np.array_equal(x, o) for o in orig) for x in a.images[:10])
    b = _small_writing(dataset, train_idx, 0.5, seed=0)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(_small_writing(dataset, train_idx, 0.5, seed=1).images, a.images)


def test_small_writing_run_records_its_copies_and_refuses_a_bad_share(common, tmp_path):
    out = tmp_path / "model"
    ok(train("--out", out, *common, "--epochs", "1", "--subset", "200", "--small-writing", "0.5"))
    t = json.loads((out / "config.json").read_text(encoding="utf-8"))["chnmnist"]["training"]
    assert t["small_writing"] == 0.5 and 95 <= t["n_small_writing"] <= 100 and t["n_train"] == 200
    assert "--small-writing 0.5" in (out / "README.md").read_text(encoding="utf-8")
    r = train("--out", tmp_path / "bad", *common, "--epochs", "1", "--subset", "200", "--small-writing", "1.5")
    assert "--small-writing" in one_line_error(r)
    assert not (tmp_path / "bad").exists()


def test_bad_weight_averaging_settings_fail_in_one_line(common, tmp_path):
    r = train("--out", tmp_path / "model", *common, "--epochs", "1", "--subset", "300", "--swa-epochs", "-1")
    assert "--swa-epochs" in one_line_error(r)


def test_validation_writers_outside_training_suites_fail_in_one_line(common, tmp_path):
    out = tmp_path / "model"
    r = train("--out", out, *common, "--epochs", "1", "--subset", "300", "--split", "writer", "--val-writers", "88-92")
    assert "91-100 are the test" in one_line_error(r)
    assert not out.exists()


# ---------------------------------------------------------------- 6-9: failures in one line

def test_divergence_stops_with_a_one_line_nan_error(common, tmp_path):
    out = tmp_path / "model"
    r = train("--out", out, *common, "--epochs", "1", "--subset", "300", "--batch-size", "64",
              "--lr", "1e30", "--no-batchnorm")
    line = one_line_error(r)
    assert "NaN" in line and "--lr" in line
    assert not (out / "model.safetensors").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True, text=True)
    need(r.returncode == 0, f"permission to mount a tmpfs (run as root): {r.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_full_disk_fails_in_one_line_and_keeps_the_old_model(data_zip, sketchset, tiny_disk):
    import chnmnist_hub as ch

    old = tiny_disk / "model"
    ch.create_model("cnn", filters=[8, 16]).save_pretrained(old)
    kept = {name: (old / name).read_bytes() for name in ("config.json", "model.safetensors", "README.md")}
    # 8 filters without pooling: a 2 MB linear layer (4 MB of checkpoint with its momentum), yet
    # cheap to run; the disk has ~350 kB left.
    r = train("--model", "cnn", "--data", data_zip, "--device", "cpu", "--quiet", "--sketchset", sketchset,
              "--filters", "8", "--no-pool", "--epochs", "1", "--subset", "128", "--batch-size", "128", "--out", old)
    line = one_line_error(r)
    assert "no space left" in line.lower()
    for name, data in kept.items():
        assert (old / name).read_bytes() == data, f"{name} changed"
    assert not tmp_files(old), f"temporary files left on the full disk: {tmp_files(old)}"
    ch.load_model(old)
    # Whatever else the failed run wrote is whole.
    check_consistent(old)


def test_help_lists_every_flag():
    r = ok(subprocess.run([sys.executable, TRAIN, "--help"], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT))
    missing = [f for f in HELP_FLAGS if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", r.stdout)]
    assert not missing, f"--help does not list {missing}"


def test_bad_data_path_fails_in_one_line(tmp_path):
    bad = tmp_path / "no-such-dir" / "chinese-mnist.zip"
    out = tmp_path / "model"
    line = one_line_error(train("--model", "cnn", "--data", bad, "--device", "cpu", "--quiet", "--out", out))
    assert str(bad) in line
    assert not out.exists()
